//! `selfsup plan`: the counted memory of a step against a real step's peak, measured by the
//! binary's counting allocator, on four kinds of step.

mod common;

use common::{assert_clean_error, json, run};

/// `selfsup plan … --measure --json`: (planned total, measured total) bytes.
fn planned_and_measured(args: &[&str]) -> (f64, f64) {
    let mut all = vec!["plan", "--measure", "--json"];
    all.extend(args);
    let out = json(&run(&all));
    let m = &out["measured"];
    (
        m["planned_total_bytes"].as_f64().unwrap(),
        m["total_bytes"].as_f64().unwrap(),
    )
}

#[test]
fn the_plan_matches_a_measured_step_within_a_quarter() {
    let cases: &[(&str, &[&str])] = &[
        // A small ResNet with a projector and the B × B similarities.
        (
            "simclr, shipped recipe",
            &["--method", "simclr", "--batch-size", "64"],
        ),
        // Bottlenecks, the ImageNet stem's max-pool, and a target that keeps nothing.
        (
            "byol, resnet50 at 96 px",
            &[
                "--method",
                "byol",
                "--arch",
                "resnet50",
                "--image-size",
                "96",
                "--batch-size",
                "2",
            ],
        ),
        // A ViT encoder on a quarter of the patches and a transformer decoder.
        (
            "mae, shipped recipe",
            &["--method", "mae", "--batch-size", "32"],
        ),
        // Multi-crop through a ViT student, a teacher and the prototype logits.
        (
            "dino, shipped recipe",
            &["--method", "dino", "--batch-size", "64"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, args) in cases {
        let (planned, measured) = planned_and_measured(args);
        let error = planned / measured - 1.0;
        eprintln!(
            "{name}: planned {:.1} MiB, measured {:.1} MiB ({:+.1}%)",
            planned / 1048576.0,
            measured / 1048576.0,
            100.0 * error
        );
        if error.abs() > 0.25 {
            failures.push(format!("{name}: {:+.1}%", 100.0 * error));
        }
    }
    assert!(
        failures.is_empty(),
        "plans off by more than 25%: {failures:?}"
    );
}

#[test]
fn published_networks_have_their_published_size() {
    // torchvision's ResNet-50 (4.09 GFLOPS as it counts them: multiply-accumulates; 25.56M
    // parameters, 2.05M of them in the classifier selfsup does not build) and timm's ViT-S/16
    // (4.6 GMACs, 22.05M parameters with a 0.39M classifier).
    for (arch, gmacs, backbone_params) in [("resnet50", 4.09, 23.51e6), ("vit-small", 4.6, 21.67e6)]
    {
        let out = json(&run(&[
            "plan",
            "--method",
            "simclr",
            "--arch",
            arch,
            "--image-size",
            "224",
            "--batch-size",
            "2",
            "--json",
        ]));
        let plan = &out["plan"];
        let measured_gmacs = plan["encoder_gmacs"].as_f64().unwrap();
        assert!(
            (measured_gmacs - gmacs).abs() < 0.05 * gmacs,
            "{arch}: {measured_gmacs} GMAC, published {gmacs}"
        );
        let stages = plan["passes"][0]["stages"].as_array().unwrap();
        let params: f64 = stages
            .iter()
            .filter(|s| s["name"] != "projector")
            .map(|s| s["params"].as_f64().unwrap())
            .sum();
        assert!(
            (params - backbone_params).abs() < 0.01 * backbone_params,
            "{arch}: {params} parameters, published {backbone_params}"
        );
    }
}

#[test]
fn the_seeds_resnet50_claim_is_checked_by_count() {
    // The seed: "ResNet-50 at 224 px needs ~2 GB of activations per 32 images". Counted in f32,
    // one view keeps ~81 MiB per image (2.5 GiB per 32), a two-view method twice that.
    let out = json(&run(&[
        "plan",
        "--method",
        "simclr",
        "--arch",
        "resnet50",
        "--image-size",
        "224",
        "--batch-size",
        "32",
        "--memory",
        "80",
        "--json",
    ]));
    let per_image = out["plan"]["activations_per_image"].as_f64().unwrap() / 1048576.0;
    assert!(
        (150.0..175.0).contains(&per_image),
        "{per_image} MiB per image, two views"
    );
    let largest = out["plan"]["fit"]["largest_batch"].as_u64().unwrap();
    assert!((420..520).contains(&largest), "batch {largest} in 80 GiB");
}

#[test]
fn plan_errors_name_what_to_fix() {
    assert_clean_error(&run(&["plan"]), "--method");
    assert_clean_error(
        &run(&["plan", "--method", "mae", "--image-size", "30"]),
        "patch",
    );
    assert_clean_error(
        &run(&["plan", "--method", "byol", "--memory", "0"]),
        "--memory",
    );
    assert_clean_error(
        &run(&["plan", "--method", "byol", "--batch-size", "0"]),
        "batch",
    );
}

#[test]
fn advice_follows_the_needs() {
    let advise = |args: &[&str]| {
        let mut all = vec!["advise", "--json", "--runs", "no-such-folder"];
        all.extend(args);
        json(&run(&all))
    };
    let first = |a: &serde_json::Value| {
        a["recommendations"][0]["method"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Fine-tuning a ViT on a budget: the method whose encoder sees a quarter of the patches.
    let cheap = advise(&["--goal", "finetune", "--backbone", "vit", "--low-compute"]);
    assert_eq!(first(&cheap), "mae", "{cheap}");
    // A CNN with small batches: no method that needs a ViT, none that needs large batches.
    let cnn = advise(&[
        "--backbone",
        "cnn",
        "--batch-size",
        "64",
        "--image-size",
        "28",
    ]);
    for r in cnn["recommendations"].as_array().unwrap() {
        let method = r["method"].as_str().unwrap();
        assert!(r["backbone"].as_str().unwrap().starts_with("resnet"), "{r}");
        assert!(
            !["simclr", "moco-v3"].contains(&method),
            "{method} at batch 64"
        );
        assert!(r["peak_bytes"].as_u64().unwrap() > 0);
    }
    assert!(cnn["outside"].is_null());
    // Text-aligned features are outside selfsup, and it says so.
    let text = advise(&["--text"]);
    assert!(text["outside"].as_str().unwrap().contains("CLIP"), "{text}");
    // A memory too small for the batch is reported with the batch that fits.
    let tight = advise(&["--memory", "4", "--batch-size", "256"]);
    let r = &tight["recommendations"][0];
    assert_eq!(r["fits"], false, "{r}");
    assert!(r["largest_batch"].as_u64().unwrap() < 256, "{r}");
}

#[test]
fn the_lab_runs_an_experiment_end_to_end() {
    let out = common::scratch("lab-negatives");
    let report = json(&run(&[
        "lab",
        "negatives",
        "--smoke",
        "--json",
        "--out",
        common::path(&out),
    ]));
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "four arms, one seed");
    let ratio = |arm: &str| {
        let r = runs.iter().find(|r| r["arm"] == arm).unwrap();
        r["std_ratio"].as_f64().unwrap()
    };
    // Ten steps are enough for the positive term alone to pull the embeddings together.
    assert!(
        ratio("simclr positives only") < 0.5 * ratio("simclr"),
        "{} vs {}",
        ratio("simclr positives only"),
        ratio("simclr")
    );
    let verdict = report["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("reproduced") || verdict.starts_with("not reproduced"),
        "{verdict}"
    );
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| simclr") || l.starts_with("| simsiam"))
            .count(),
        4
    );
    // The plot is a picture with the four arms' colours in it.
    let png = image::open(out.join("std.png")).unwrap().to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    for colour in [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]] {
        assert!(
            colours.contains(&colour),
            "{colour:?} missing from the plot"
        );
    }

    // An invocation interrupted during SimSiam's run: --resume keeps the three finished runs
    // (their results are the stored ones, to the bit) and trains only SimSiam again.
    let interrupted = out.join("runs/simsiam-s0");
    std::fs::remove_file(interrupted.join("lab-run.json")).unwrap();
    let resumed = json(&run(&[
        "lab",
        "negatives",
        "--smoke",
        "--resume",
        "--json",
        "--out",
        common::path(&out),
    ]));
    let resumed_runs = resumed["runs"].as_array().unwrap();
    assert_eq!(resumed_runs.len(), 4);
    for (before, after) in runs.iter().zip(resumed_runs) {
        assert_eq!(before["arm"], after["arm"]);
        let retrained = before["arm"] == "simsiam";
        assert_eq!(
            before["seconds"] != after["seconds"],
            retrained,
            "{} {} -> {}",
            before["arm"],
            before["seconds"],
            after["seconds"]
        );
    }
    assert!(interrupted.join("lab-run.json").exists());

    // The four runs side by side: one row each, their logged losses, one picture.
    let compared = json(&run(&[
        "compare",
        common::path(&out.join("runs")),
        "--json",
    ]));
    let rows = compared["runs"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "simclr-positives-only-s0",
            "simclr-s0",
            "simsiam-no-stop-gradient-s0",
            "simsiam-s0"
        ]
    );
    for row in rows {
        let dir = std::path::PathBuf::from(row["dir"].as_str().unwrap());
        let logged = common::metrics(&dir);
        let curve = row["loss_curve"].as_array().unwrap();
        assert_eq!(curve.len(), logged.len());
        assert_eq!(curve.last().unwrap()[1], logged.last().unwrap()["loss"]);
        assert!(row["train_seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["eval"].is_null() && row["knn_curve"].as_array().unwrap().is_empty());
        let diagnosed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("diagnose.json")).unwrap())
                .unwrap();
        assert_eq!(row["diagnose"]["verdict"], diagnosed["verdict"]);
        assert_eq!(
            row["diagnose"]["effective_rank"],
            diagnosed["effective_rank"]
        );
        // TensorBoard's copy of the curve, read back by selfsup's own reader.
        let tb = selfsup::run::tensorboard::event_files(&dir.join("tb")).unwrap();
        let events = selfsup::run::tensorboard::read_events(&tb[0]).unwrap();
        let losses: Vec<(i64, f32)> = events
            .iter()
            .flat_map(|e| e.values.iter().map(move |v| (e.step, v)))
            .filter_map(|(step, (tag, value))| match value {
                selfsup::run::tensorboard::Value::Scalar(v) if tag == "loss" => Some((step, *v)),
                _ => None,
            })
            .collect();
        let expected: Vec<(i64, f32)> = logged
            .iter()
            .map(|l| {
                (
                    l["step"].as_i64().unwrap(),
                    l["loss"].as_f64().unwrap() as f32,
                )
            })
            .collect();
        assert_eq!(losses, expected, "{}", dir.display());
    }
    let plot = image::open(compared["plot"].as_str().unwrap())
        .unwrap()
        .to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = plot.pixels().map(|p| p.0).collect();
    assert!(colours.contains(&[214, 39, 40]), "the fourth run's colour");
}

#[test]
fn every_photo_recipe_resolves_and_plans() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/photos");
    let mut planned = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = json(&run(&[
            "plan",
            "--recipe",
            common::path(&path),
            "--batch-size",
            "8",
            "--json",
        ]));
        assert_eq!(out["plan"]["image_side"], 224, "{}", path.display());
        assert_eq!(out["plan"]["channels"], 3, "{}", path.display());
        assert!(out["plan"]["train_gflops_per_image"].as_f64().unwrap() > 1.0);
        planned += 1;
    }
    assert!(planned >= 5);
}

/// A shipped recipe that resizes the bundled grayscale subset plans one channel at that size,
/// as `train` then runs it; `--image-size` plans colour images.
#[test]
fn a_resized_bundled_recipe_plans_grayscale_images() {
    let plan = |args: &[&str]| {
        let mut all = vec!["plan", "--json"];
        all.extend(args);
        json(&run(&all))["plan"].clone()
    };
    let mae = plan(&["--method", "mae"]);
    assert_eq!(
        (mae["channels"].clone(), mae["image_side"].clone()),
        (1.into(), 32.into())
    );
    let colour = plan(&["--method", "mae", "--image-size", "64"]);
    assert_eq!(colour["channels"], 3);
    let patch_params =
        |p: &serde_json::Value| p["passes"][0]["stages"][0]["params"].as_u64().unwrap();
    // The patch projection of 4×4 patches: 16 inputs per channel, 128 outputs.
    assert_eq!(
        patch_params(&colour)
            - patch_params(&plan(&[
                "--method",
                "mae",
                "--image-size",
                "64",
                "--channels",
                "1"
            ])),
        2 * 16 * 128
    );
}

#[test]
fn ablation_switches_change_the_networks() {
    let stages = |sets: &[&str]| -> Vec<String> {
        let mut args = vec!["plan", "--method", "byol", "--json"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = json(&run(&args));
        out["plan"]["passes"][0]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(stages(&[]).contains(&"predictor".to_string()));
    assert!(!stages(&["method.predictor=[]"]).contains(&"predictor".to_string()));
    // Without BatchNorm the heads' linear layers carry biases instead: more parameters.
    let params = |sets: &[&str]| {
        let mut args = vec!["plan", "--method", "byol", "--json"];
        for s in sets {
            args.extend(["--set", s]);
        }
        json(&run(&args))["plan"]["params"]["trained"]
            .as_u64()
            .unwrap()
    };
    assert_ne!(params(&["method.head_bn=false"]), params(&[]));
    assert_clean_error(
        &run(&["plan", "--method", "byol", "--set", "method.predictor=[7]"]),
        "method.predictor",
    );
}
