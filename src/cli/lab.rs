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
    let seeds = match &args.seeds {
        Some(seeds) => seeds.clone(),
        None if args.smoke => vec![0],
        None => vec![0, 1, 2],
    };
    let options = LabOptions {
        seeds,
        data: args.data.clone(),
        epochs: if args.smoke { Some(1) } else { args.epochs },
        max_images: if args.smoke { 1280 } else { 0 },
        out: args.out.clone().unwrap_or_else(|| default_out(experiment)),
        resume: args.resume,
    };
    if !args.json {
        eprintln!("{}: {}", experiment.name(), experiment.claim());
    }
    let mut progress = TrainProgress::new(!args.json);
    let report = run_experiment(experiment, &options, &mut progress, |start| {
        if !args.json {
            let reused = if start.reused {
                " (finished earlier with this recipe; reused)"
            } else {
                ""
            };
            eprintln!(
                "run {}/{}: {}, seed {}{reused}",
                start.index + 1,
                start.total,
                start.label,
                start.seed
            );
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
