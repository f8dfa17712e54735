//! `selfsup advise`: which method fits a user's needs, and why.

use selfsup::error::{Error, Result};
use selfsup::lab::advise::{Advice, BackboneKind, Goal, Needs, advise};

use super::args::{AdviseArgs, BackboneArg, GoalArg};
use super::plan::gib;
use super::print_json;

pub fn advise_command(args: AdviseArgs) -> Result<()> {
    let memory = match args.memory {
        Some(g) if g > 0.0 => Some((g * 1024f64.powi(3)) as u64),
        Some(g) => return Err(Error::Usage(format!("--memory {g}: give GiB, e.g. 24"))),
        None => None,
    };
    if args.batch_size < 2 {
        return Err(Error::Usage(
            "--batch-size must be at least 2 (batch norm and contrastive losses need pairs)".into(),
        ));
    }
    let needs = Needs {
        goal: match args.goal {
            GoalArg::Frozen => Goal::Frozen,
            GoalArg::Finetune => Goal::Finetune,
        },
        backbone: match args.backbone {
            BackboneArg::Cnn => BackboneKind::Cnn,
            BackboneArg::Vit => BackboneKind::Vit,
            BackboneArg::Any => BackboneKind::Any,
        },
        low_compute: args.low_compute,
        batch: args.batch_size,
        image_side: args.image_size,
        memory,
        text: args.text,
    };
    let advice = advise(&needs, Some(&args.runs))?;
    if args.json {
        print_json(&advice);
    } else {
        print!("{}", advice_text(&advice));
    }
    Ok(())
}

fn advice_text(a: &Advice) -> String {
    let n = &a.needs;
    let goal = match n.goal {
        Goal::Frozen => "frozen features for many tasks",
        Goal::Finetune => "fine-tuning with labels",
    };
    let backbone = match n.backbone {
        BackboneKind::Cnn => "a CNN",
        BackboneKind::Vit => "a ViT",
        BackboneKind::Any => "any backbone",
    };
    let mut s = format!(
        "For {goal}, {backbone}, batch {}, {}-px images{}{}:\n",
        n.batch,
        n.image_side,
        n.memory
            .map(|m| format!(", {} of memory", gib(m)))
            .unwrap_or_default(),
        if n.low_compute { ", least compute" } else { "" }
    );
    if let Some(outside) = a.outside {
        s += &format!("\n  First: {outside}\n  If image-only features will do:\n");
    }
    for (i, r) in a.recommendations.iter().enumerate() {
        s += &format!("\n{}. {} ({})\n", i + 1, r.method.as_str(), r.backbone);
        for reason in &r.reasons {
            s += &format!("   - {reason}\n");
        }
        let fit = match (r.fits, r.largest_batch) {
            (Some(true), Some(b)) => format!(", fits (up to batch {b})"),
            (Some(false), Some(b)) => format!(", does NOT fit: the largest batch that does is {b}"),
            (Some(false), None) => ", does NOT fit even at batch 1".into(),
            _ => String::new(),
        };
        s += &format!(
            "   - planned step: {} at batch {}{fit}; {:.1} GFLOP per image\n     ({})\n",
            gib(r.peak_bytes),
            n.batch,
            r.train_gflops_per_image,
            r.plan_command
        );
        for run in &r.runs {
            s += &format!(
                "   - your run {}: kNN {:.3} vs random init {:.3} ({:+.1} points), linear {:.3} vs {:.3}\n",
                run.dir.display(),
                run.knn,
                run.random_init_knn,
                100.0 * (run.knn - run.random_init_knn),
                run.linear,
                run.random_init_linear
            );
        }
    }
    s += &format!(
        "\nTry one: selfsup train --method {} --data YOUR_IMAGES --out runs/{}\n",
        a.recommendations[0].method.as_str(),
        a.recommendations[0].method.as_str()
    );
    s
}
