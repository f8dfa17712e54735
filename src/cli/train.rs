//! `selfsup train`: resolve the recipe (or reuse a resumed run's), pretrain, diagnose, evaluate.

use selfsup::error::{Error, Result};
use selfsup::method::MethodName;
use selfsup::pipeline::pretrain;
use selfsup::recipe::{Overrides, Recipe};
use selfsup::run::RunDir;
use selfsup::train::TrainOptions;

use super::args::TrainArgs;
use super::print_json;
use super::progress::TrainProgress;
use super::tables::{diagnose_table, eval_table};

/// The recipe a `train` command line asks for.
fn recipe_for(args: &TrainArgs) -> Result<Recipe> {
    let method = args.method.as_deref().map(MethodName::parse).transpose()?;
    if args.resume {
        return resumed_recipe(args, method);
    }
    if method.is_none() && args.recipe.is_none() {
        return Err(Error::Usage(
            "no method given: pass --method (see `selfsup methods`) or a --recipe with method.name"
                .into(),
        ));
    }
    let batch_size = match args.batch_size {
        Some(b) if b <= 0 => {
            return Err(Error::Usage(format!(
                "--batch-size {b}: the batch size must be a positive number (e.g. 128)"
            )));
        }
        b => b.map(|b| b as usize),
    };
    Recipe::resolve(&Overrides {
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

/// `--resume`: the run's own resolved recipe is authoritative; only the epoch count may grow.
fn resumed_recipe(args: &TrainArgs, method: Option<MethodName>) -> Result<Recipe> {
    let changed: Vec<&str> = [
        ("--recipe", args.recipe.is_some()),
        ("--data", args.data.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--seed", args.seed.is_some()),
        ("--init", args.init.is_some()),
        ("--set", !args.sets.is_empty()),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    if !changed.is_empty() {
        return Err(Error::Usage(format!(
            "--resume continues with the run's own recipe ({}); drop {} (only --epochs may change)",
            RunDir::new(&args.out).recipe_path().display(),
            changed.join(", ")
        )));
    }
    let mut recipe = selfsup::run::Run::open(&args.out)?.recipe;
    if let Some(m) = method
        && m != recipe.method.name()
    {
        return Err(Error::Usage(format!(
            "--resume: {} was trained with {}, not {m}",
            args.out.display(),
            recipe.method.name()
        )));
    }
    if let Some(epochs) = args.epochs {
        recipe.train.epochs = epochs;
        recipe.validate()?;
    }
    Ok(recipe)
}

pub fn train_command(args: TrainArgs) -> Result<()> {
    let recipe = recipe_for(&args)?;
    let quiet = args.json;
    let options = TrainOptions {
        out: args.out.clone(),
        resume: args.resume,
        device: args.device.into(),
    };
    let mut progress = TrainProgress::new(!quiet);
    let r = pretrain(&recipe, &options, !args.no_eval, &mut progress, |msg| {
        if !quiet {
            eprintln!("{msg}…");
        }
    })?;
    if args.json {
        print_json(&r);
        return Ok(());
    }
    let summary = &r.train;
    println!(
        "Trained {} for {} epochs ({} steps) in {:.0} s ({:.0} img/s); final loss {:.4}",
        summary.method,
        summary.epochs,
        summary.steps,
        summary.seconds,
        summary.images_per_s,
        summary.final_loss
    );
    println!(
        "Waited for data {:.1}% of the time. Run directory: {}\n",
        100.0 * summary.data_wait_fraction,
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
