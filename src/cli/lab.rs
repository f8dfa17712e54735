//! `selfsup lab`: an experiment's runs, table, plot and verdict.

use selfsup::error::{Error, Result};
use selfsup::lab::experiments::{
    Experiment, LabOptions, default_out, parse_experiment, run_experiment,
};

use super::args::LabArgs;
use super::print_json;
use super::progress::TrainProgress;

pub fn lab_command(args: LabArgs) -> Result<()> {
    let experiment = parse_experiment(&args.experiment).ok_or_else(|| {
        let names: Vec<&str> = Experiment::ALL.iter().map(|e| e.name()).collect();
        Error::Usage(format!(
            "unknown experiment '{}'; choose one of: {}",
            args.experiment,
            names.join(", ")
        ))
    })?;
    if args.seeds.is_empty() {
        return Err(Error::Usage(
            "--seeds needs at least one seed, e.g. 0,1,2".into(),
        ));
    }
    let seeds_given = std::env::args().any(|a| a.starts_with("--seeds"));
    let options = LabOptions {
        seeds: if args.smoke && !seeds_given {
            vec![args.seeds[0]]
        } else {
            args.seeds.clone()
        },
        data: args.data.clone(),
        epochs: if args.smoke { Some(1) } else { args.epochs },
        max_images: if args.smoke { 1280 } else { 0 },
        out: args.out.clone().unwrap_or_else(|| default_out(experiment)),
    };
    if !args.json {
        eprintln!("{}: {}", experiment.name(), experiment.claim());
    }
    let mut progress = TrainProgress::new(!args.json);
    let report = run_experiment(experiment, &options, &mut progress, |i, n, label, seed| {
        if !args.json {
            eprintln!("run {}/{n}: {label}, seed {seed}", i + 1);
        }
    })?;
    progress.clear();
    if args.json {
        print_json(&report);
        return Ok(());
    }
    print!(
        "{}",
        std::fs::read_to_string(&report.table).map_err(|e| Error::io(&report.table, e))?
    );
    println!(
        "\nWrote {}, {} and {}",
        report.table.display(),
        report.plot.display(),
        options.out.join("lab.json").display()
    );
    Ok(())
}
