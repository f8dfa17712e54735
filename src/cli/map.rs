//! `selfsup map`: a run's held-out embeddings in 2-D beside its random-init twin.

use selfsup::error::Result;
use selfsup::inspect::map::{MapOptions, Projection, map_run};
use selfsup::run::Run;

use super::args::{MapArgs, ProjectionArg};
use super::inspect::labelled_data;
use super::print_json;

pub fn map_command(args: MapArgs) -> Result<()> {
    let run = Run::open(&args.run)?;
    let splits = labelled_data(&run, args.data.as_deref())?;
    let options = MapOptions {
        projection: match args.projection {
            ProjectionArg::Tsne => Projection::Tsne,
            ProjectionArg::Pca => Projection::Pca,
        },
        images: args.images,
        perplexity: args.perplexity,
        out: args.out.clone(),
        device: args.device.into(),
    };
    let report = map_run(&run, &splits, &options, |msg| {
        if !args.json {
            eprintln!("{msg}…");
        }
    })?;
    if args.json {
        print_json(&report);
        return Ok(());
    }
    let show = |s: Option<f64>| s.map_or_else(|| "-".to_string(), |v| format!("{v:+.3}"));
    println!(
        "Map of {} held-out images ({:?}, {:.0} s)\n",
        report.images, report.projection, report.seconds
    );
    println!(
        "  {:<22} {:>16} {:>20}",
        "encoder", "map silhouette", "feature silhouette"
    );
    for (name, s) in [
        ("trained", &report.trained),
        ("random init", &report.random_init),
    ] {
        println!(
            "  {:<22} {:>16} {:>20}",
            name,
            show(s.map_silhouette),
            show(s.feature_silhouette)
        );
    }
    if !report.labelled {
        println!(
            "\n  The images have no labels: the maps are drawn in one colour and scored by none."
        );
    }
    println!("\n  picture  {}", report.picture.display());
    Ok(())
}
