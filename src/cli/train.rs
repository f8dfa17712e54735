//! `selfsup train`: resolve the recipe (or reuse a resumed run's), pretrain, diagnose, evaluate.

use selfsup::error::{Error, Result};
use selfsup::method::MethodName;
use selfsup::pipeline::pretrain;
use selfsup::recipe::{Overrides, Recipe, set_key};
use selfsup::run::RunDir;
use selfsup::train::{Interrupt, TrainOptions};

use super::args::{DeviceArg, TrainArgs};
use super::print_json;
use super::progress::TrainProgress;
use super::tables::{diagnose_table, eval_table};

/// The recipe a `train` command line asks for, and whether it continues the run in `--out`.
fn recipe_for(args: &TrainArgs) -> Result<(Recipe, bool)> {
    let method = args.method.as_deref().map(MethodName::parse).transpose()?;
    let holds_run = RunDir::new(&args.out).recipe_path().is_file();
    if args.resume || (args.resume_if_exists && holds_run) {
        return Ok((resumed_recipe(args, method)?, true));
    }
    if method.is_none() && args.recipe.is_none() {
        return Err(Error::Usage(
            "no method given: pass --method (see `selfsup methods`) or a --recipe with method.name"
                .into(),
        ));
    }
    Ok((Recipe::resolve(&overrides(args, method)?)?, false))
}

fn overrides(args: &TrainArgs, method: Option<MethodName>) -> Result<Overrides> {
    let batch_size = match args.batch_size {
        Some(b) if b <= 0 => {
            return Err(Error::Usage(format!(
                "--batch-size {b}: the batch size must be a positive number (e.g. 128)"
            )));
        }
        b => b.map(|b| b as usize),
    };
    Ok(Overrides {
        method,
        recipe_file: args.recipe.clone(),
        data: args.data.clone(),
        epochs: args.epochs,
        batch_size,
        seed: args.seed,
        sets: args.sets.clone(),
        init: args.init.clone(),
    })
}

/// `--resume`: the run's own recipe, provided the command asks for nothing else; only the
/// epoch count may change. The command that started the run is accepted as it is.
fn resumed_recipe(args: &TrainArgs, method: Option<MethodName>) -> Result<Recipe> {
    let dir = RunDir::new(&args.out);
    if !dir.recipe_path().is_file() {
        return Err(Error::Usage(format!(
            "--resume: {} holds no run to continue; start it without --resume (job scripts that may be requeued: --resume-if-exists does both)",
            args.out.display()
        )));
    }
    let run = Recipe::load(&dir.recipe_path())?;
    if let Some(m) = method
        && m != run.method.name()
    {
        return Err(Error::Usage(format!(
            "--resume: {} was trained with {}, not {m}",
            args.out.display(),
            run.method.name()
        )));
    }
    // A whole command line (method or recipe file) is resolved as it would start a run; single
    // flags are laid over the run's recipe.
    let o = overrides(args, method)?;
    let asked = if args.method.is_some() || args.recipe.is_some() {
        Recipe::resolve(&o)?
    } else {
        run.clone().with_overrides(&o)?
    };
    let differ: Vec<String> = run
        .differences(&asked)
        .into_iter()
        .filter(|d| d.key != "train.epochs")
        .map(|d| format!("{} = {} (the run has {})", d.key, d.theirs, d.ours))
        .collect();
    if !differ.is_empty() {
        return Err(Error::Usage(format!(
            "--resume: this command differs from the run in {} ({}): {}. Only --epochs may change: drop or correct those values, or start a new run with another --out",
            args.out.display(),
            dir.recipe_path().display(),
            differ.join("; ")
        )));
    }
    let set_epochs = args.sets.iter().any(|s| set_key(s) == "train.epochs");
    let mut recipe = run;
    if args.epochs.is_some() || set_epochs {
        recipe.train.epochs = asked.train.epochs;
        recipe.validate()?;
    }
    Ok(recipe)
}

/// The command that continues an interrupted run, as this one was typed.
fn resume_command(args: &TrainArgs) -> String {
    let program = std::env::args().next().unwrap_or_else(|| "selfsup".into());
    let mut words = vec![
        program,
        "train".into(),
        "--resume".into(),
        "--out".into(),
        args.out.display().to_string(),
    ];
    if args.device == DeviceArg::Gpu {
        words.extend(["--device".into(), "gpu".into()]);
    }
    if args.no_eval {
        words.push("--no-eval".into());
    }
    if args.json {
        words.push("--json".into());
    }
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%~".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Ctrl-C / SIGTERM stopped training after a checkpoint: say how to continue, exit 130 / 143.
fn stopped(e: &Error, args: &TrainArgs, progress: &TrainProgress) -> ! {
    progress.clear();
    let command = resume_command(args);
    if let Error::Interrupted {
        signal,
        step,
        checkpoint,
    } = e
        && args.json
    {
        print_json(&serde_json::json!({
            "interrupted": {
                "signal": selfsup::train::signal_name(*signal),
                "step": step,
                "checkpoint": checkpoint,
                "resume": command,
            }
        }));
    }
    eprintln!("{e}\ncontinue with: {command}");
    std::process::exit(e.exit_code())
}

pub fn train_command(args: TrainArgs) -> Result<()> {
    let (recipe, resume) = recipe_for(&args)?;
    let quiet = args.json;
    let options = TrainOptions {
        out: args.out.clone(),
        resume,
        device: args.device.into(),
        interrupt: Interrupt::on_signals()?,
    };
    let mut progress = TrainProgress::new(!quiet);
    let r = match pretrain(&recipe, &options, !args.no_eval, &mut progress, |msg| {
        if !quiet {
            eprintln!("{msg}…");
        }
    }) {
        Err(e @ Error::Interrupted { .. }) => stopped(&e, &args, &progress),
        r => r?,
    };
    if args.json {
        print_json(&r);
        return Ok(());
    }
    let summary = &r.train;
    if summary.resumed_from_step == Some(summary.steps) {
        println!(
            "The {} run had finished all {} epochs ({} steps) before; nothing left to train. Its encoder was diagnosed{} again.",
            summary.method,
            summary.epochs,
            summary.steps,
            if r.eval.is_some() {
                " and evaluated"
            } else {
                ""
            }
        );
    } else {
        println!(
            "Trained {} for {} epochs ({} steps) in {:.0} s ({:.0} img/s); final loss {:.4}",
            summary.method,
            summary.epochs,
            summary.steps,
            summary.seconds,
            summary.images_per_s,
            summary.final_loss
        );
    }
    println!(
        "Making batches (decode + augment) took {:.1}% of the time. Run directory: {}\n",
        100.0 * summary.data_fraction,
        summary.run_dir.display()
    );
    print!("{}", diagnose_table(&r.diagnose));
    println!(
        "  spectrum plot     {}\n",
        RunDir::new(&summary.run_dir).spectrum_path().display()
    );
    if let Some(e) = &r.eval {
        print!("{}", eval_table(e));
    }
    Ok(())
}
