//! Encoders out of selfsup: `export` writes exactly the state dict the PyTorch model on its card
//! holds (keys, dtypes and shapes from torchvision / timm, in tests/fixtures/export/), with every
//! value in PyTorch's layout; `embed` writes one row per readable image, in order, named.
//! (`scripts/export_parity.py` checks the features against PyTorch itself.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use common::photos::{self, Size, Source, Spec};
use common::{assert_clean_error, json, path, run, scratch};
use selfsup::nn::Backbone;
use selfsup::run::Run;

fn fashion_folder(root: &Path, size: Size, corrupt: usize) -> PathBuf {
    let spec = Spec {
        source: Source::Fashion(selfsup::data::bundled_path()),
        train: 192,
        val: 48,
        size,
        corrupt,
        // JPEG keeps Fashion-MNIST grayscale (the WebP encoder writes RGB).
        jpeg_only: true,
        seed: 3,
    };
    let (images, _) = photos::generate(&spec);
    let folder = root.join("folder");
    photos::write_folder(&folder, &images);
    folder
}

fn train(out: &Path, data: &Path, args: &[&str]) {
    let mut all = vec!["train", "--data", path(data), "--epochs", "1", "--no-eval"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", path(out), "--json"]);
    let done = run(&all);
    assert!(done.status.success(), "{}", common::stderr(&done));
}

/// Little-endian f32 values, widened for exact comparison.
fn f32_values(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
        .collect()
}

/// A tensor read back: dtype name, shape, values as f64.
type Stored = (String, Vec<usize>, Vec<f64>);

/// Every tensor of a safetensors file by name.
fn read_safetensors(file: &Path) -> BTreeMap<String, Stored> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let (dtype, values) = match view.dtype() {
                safetensors::Dtype::F32 => ("float32", f32_values(view.data())),
                safetensors::Dtype::I64 => (
                    "int64",
                    view.data()
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                        .collect(),
                ),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (dtype.to_string(), view.shape().to_vec(), values))
        })
        .collect()
}

/// selfsup's own tensors (burn layout), by burn path.
fn own_tensors(run_dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    let encoder: Backbone = Run::open(run_dir)
        .unwrap()
        .encoder(&Device::flex())
        .unwrap();
    encoder
        .collect(None, None, true)
        .into_iter()
        .map(|t| {
            let values = f32_values(&t.to_bytes().unwrap());
            (t.name.clone(), (t.shape.to_vec(), values))
        })
        .collect()
}

fn fixture(name: &str) -> serde_json::Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/export")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// Keys, dtypes and shapes of the exported file against the PyTorch model's state dict.
fn assert_matches_state_dict(file: &Path, fixture: &serde_json::Value) {
    let ours = read_safetensors(file);
    let theirs = fixture["state_dict"].as_object().unwrap();
    let missing: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
    for (key, spec) in theirs {
        let (dtype, shape, _) = &ours[key];
        assert_eq!(dtype, spec[0].as_str().unwrap(), "{key} dtype");
        let want: Vec<usize> = spec[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, &want, "{key} shape");
    }
}

fn transpose(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

#[test]
fn export_writes_the_state_dict_of_the_pytorch_model_on_its_card() {
    let root = scratch("weights-export");
    let data = fashion_folder(&root, Size::Fixed(28, 28), 0);

    // ResNet-18, width 8, small stem: torchvision's names, BatchNorm statistics, the counter.
    let resnet = root.join("resnet");
    train(&resnet, &data, &["--method", "byol"]);
    let card_r = json(&run(&["export", "--run", path(&resnet), "--json"]));
    let fixture_r = fixture("resnet18_w8_small_1ch_28px.json");
    assert_eq!(card_r["python"], fixture_r["python"]);
    let file = resnet.join("encoder.safetensors");
    assert_matches_state_dict(&file, &fixture_r);
    let exported = read_safetensors(&file);
    let own = own_tensors(&resnet);
    // Flat block 5 is stage 3's first block (2 + 2 before it), with a downsample.
    for (theirs, ours) in [
        (
            "layer3.0.downsample.1.running_var",
            "layers.4.downsample.bn.running_var",
        ),
        (
            "layer3.0.downsample.1.weight",
            "layers.4.downsample.bn.gamma",
        ),
        (
            "layer3.0.downsample.0.weight",
            "layers.4.downsample.conv.weight",
        ),
        ("layer4.1.bn2.bias", "layers.7.bn2.beta"),
        ("bn1.running_mean", "bn1.running_mean"),
    ] {
        assert_eq!(exported[theirs].2, own[ours].1, "{theirs} = {ours}");
    }
    assert_eq!(exported["layer2.0.bn1.num_batches_tracked"].2, vec![0.0]);

    // train --init: every encoder of the method (BYOL's online and target) starts from the
    // exported weights, BatchNorm statistics included, and images are normalised as the card says.
    let recipe = selfsup::recipe::Recipe::resolve(&selfsup::recipe::Overrides {
        method: Some(selfsup::method::MethodName::Byol),
        data: Some(data.clone()),
        init: Some(file.clone()),
        ..Default::default()
    })
    .unwrap();
    let splits = recipe.load_data().unwrap();
    let options = selfsup::train::TrainOptions::new(root.join("init"));
    let (_, method) =
        selfsup::train::Trainer::set_up::<selfsup::method::Byol>(&recipe, &splits, &options)
            .unwrap();
    let started: Vec<(String, Vec<f64>)> = method
        .collect(None, None, true)
        .into_iter()
        .map(|t| {
            let v = f32_values(&t.to_bytes().unwrap());
            (t.name.clone(), v)
        })
        .collect();
    for (name, (_, values)) in &own {
        let copies = started
            .iter()
            .filter(|(k, v)| k.ends_with(&format!(".{name}")) && v == values)
            .count();
        assert_eq!(copies, 2, "{name}: online and target");
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("init/run.json")).unwrap())
            .unwrap();
    assert_eq!(info["mean"], card_r["mean"]);
    assert_eq!(info["std"], card_r["std"]);
    // Weights of another architecture: one line naming the first differences.
    let out = run(&[
        "train",
        "--method",
        "byol",
        "--data",
        path(&data),
        "--set",
        "model.width=16",
        "--init",
        path(&file),
        "--out",
        path(&root.join("wrong")),
    ]);
    assert_clean_error(&out, "conv1.weight [8, 1, 3, 3] vs [16, 1, 3, 3]");

    // A ViT with registers, mean pooling and LayerScale: timm's names, Linear weights transposed,
    // CLS's position folded into the token (timm's no_embed_class).
    let vit = root.join("vit");
    train(
        &vit,
        &data,
        &[
            "--method",
            "simclr",
            "--set",
            "model.arch=vit",
            "--set",
            "model.embed_dim=64",
            "--set",
            "model.depth=2",
            "--set",
            "model.heads=2",
            "--set",
            "model.registers=2",
            "--set",
            "model.pool=mean",
            "--set",
            "model.layer_scale=0.1",
            "--set",
            "model.pos_embed=learned",
        ],
    );
    let card = json(&run(&["export", "--run", path(&vit), "--json"]));
    let fixture_v = fixture("vit_64d_2blocks_2reg_mean_ls_1ch_28px.json");
    assert_eq!(card["python"], fixture_v["python"]);
    let file = vit.join("encoder.safetensors");
    assert_matches_state_dict(&file, &fixture_v);
    let exported = read_safetensors(&file);
    let own = own_tensors(&vit);
    let d = 64;
    let pos = &own["pos_embed"].1;
    let cls: Vec<f64> = own["cls_token"]
        .1
        .iter()
        .zip(&pos[..d])
        .map(|(c, p)| (*c as f32 + *p as f32) as f64)
        .collect();
    assert_eq!(exported["cls_token"].2, cls);
    assert_eq!(exported["pos_embed"].2, pos[d..].to_vec());
    assert_eq!(exported["reg_token"].2, own["reg_token"].1);
    let qkv = &own["blocks.1.attn.qkv.weight"].1;
    assert_eq!(
        exported["blocks.1.attn.qkv.weight"].2,
        transpose(qkv, d, 3 * d)
    );
    assert_eq!(
        exported["blocks.0.ls2.gamma"].2,
        own["blocks.0.ls2.gamma"].1
    );

    // What it cannot write is refused in one line.
    let out = run(&["export", "--run", path(&vit), "--names", "torchvision"]);
    assert_clean_error(&out, "--names timm");
    let out = run(&[
        "export",
        "--run",
        path(&vit),
        "--out",
        path(&root.join("vit.pt")),
    ]);
    assert_clean_error(&out, ".safetensors");
}

fn read_npy(file: &Path) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap();
    let (rows, rest) = shape.split_once(", ").unwrap();
    let cols = rest.split(')').next().unwrap();
    let values = bytes[10 + len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (rows.parse().unwrap(), cols.parse().unwrap(), values)
}

#[test]
fn embed_writes_a_row_per_readable_image_in_order_with_its_name_and_label() {
    let root = scratch("weights-embed");
    let square = root.join("square");
    let run_dir = root.join("run");
    train(
        &run_dir,
        &fashion_folder(&square, Size::Fixed(28, 28), 0),
        &["--method", "byol"],
    );

    // A streamed folder of mixed sizes with a truncated JPEG planted among its 192 train images.
    let mixed = fashion_folder(&root.join("mixed"), Size::Mixed { min: 32, max: 90 }, 1);
    let out = root.join("mixed.npy");
    let report = json(&run(&[
        "embed",
        "--run",
        path(&run_dir),
        "--data",
        path(&mixed),
        "--out",
        path(&out),
        "--json",
    ]));
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{report}");
    let (rows, dim, values) = read_npy(&out);
    assert_eq!((rows, dim), (192 + 48, 64));
    assert_eq!(values.len(), rows * dim);
    let csv = std::fs::read_to_string(root.join("mixed.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,split,name,label,class");
    assert_eq!(lines.len(), rows + 1);
    let bad = skipped[0]["name"].as_str().unwrap();
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], i.to_string());
        assert!(Path::new(fields[2]).is_file(), "{line}");
        assert_ne!(fields[2], bad);
        // Class folders are named class<label>.
        assert_eq!(fields[4], format!("class{}", fields[3]));
    }
    assert_eq!(lines.iter().filter(|l| l.contains(",test,")).count(), 48);

    // Near-duplicates planted in the folder (three images re-encoded as PNG at 1.5× their size)
    // come back as groups of their own; the contact sheet is drawn.
    let originals: Vec<PathBuf> = lines[1..]
        .iter()
        .map(|l| PathBuf::from(l.split(',').nth(2).unwrap()))
        .filter(|p| p.to_string_lossy().contains("/train/"))
        .step_by(50)
        .take(3)
        .collect();
    let mut planted = Vec::new();
    for (n, original) in originals.iter().enumerate() {
        let img = image::open(original).unwrap();
        let bigger = img.resize(
            img.width() * 3 / 2,
            img.height() * 3 / 2,
            image::imageops::FilterType::Triangle,
        );
        let copy = original.with_file_name(format!("planted-copy-{n}.png"));
        bigger.save(&copy).unwrap();
        planted.push((original.display().to_string(), copy.display().to_string()));
    }
    let dup = root.join("dup.npy");
    run(&[
        "embed",
        "--run",
        path(&run_dir),
        "--data",
        path(&mixed),
        "--out",
        path(&dup),
        "--json",
    ]);
    let found = json(&run(&[
        "neighbors",
        "--embeddings",
        path(&dup),
        "--k",
        "3",
        "--json",
    ]));
    // Each copy and its original are each other's nearest neighbour, and grouped as duplicates.
    // (How many other pairs pass the threshold depends on the encoder: this one saw 192 images
    // for one epoch, and distinct garments at 28 px reach 0.998 under it.)
    let table = std::fs::read_to_string(root.join("dup-neighbors/neighbors.csv")).unwrap();
    let first = |name: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!(",{name},1,")))
            .map(|l| l.split(',').nth(4).unwrap().to_string())
            .unwrap()
    };
    let groups = found["duplicate_groups"].as_array().unwrap();
    for (original, copy) in &planted {
        assert_eq!(&first(copy), original);
        assert_eq!(&first(original), copy);
        assert!(
            groups.iter().any(|g| {
                let g: Vec<&str> = g
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect();
                g.contains(&original.as_str()) && g.contains(&copy.as_str())
            }),
            "{original} and its copy not grouped"
        );
    }
    let sheet = image::open(found["contact_sheet"].as_str().unwrap()).unwrap();
    assert_eq!(sheet.width(), 8 + 4 * (96 + 8) + 8);

    // Row k is image k's features whatever batch it fell in: embed the held-out split alone and
    // compare with the whole file's tail.
    let test_out = root.join("test.npy");
    run(&[
        "embed",
        "--run",
        path(&run_dir),
        "--data",
        path(&mixed),
        "--split",
        "test",
        "--out",
        path(&test_out),
        "--json",
    ]);
    let (test_rows, _, test_values) = read_npy(&test_out);
    assert_eq!(test_rows, 48);
    let tail = &values[(rows - 48) * dim..];
    let largest = tail.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in tail.iter().zip(&test_values) {
        assert!((a - b).abs() <= 1e-5 * largest, "{a} vs {b}");
    }
}

/// The fixtures of `scripts/import_fixtures.py`: `inputs` and each model's PyTorch features.
fn import_fixtures() -> (PathBuf, BTreeMap<String, Stored>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
    let tensors = read_safetensors(&dir.join("inputs.safetensors"));
    (dir, tensors)
}

#[test]
fn imported_checkpoints_give_the_features_pytorch_computed() {
    use burn::tensor::{Tensor, TensorData};
    let (dir, fixtures) = import_fixtures();
    let device = Device::flex();
    let (_, shape, inputs) = &fixtures["inputs"];
    let inputs: Vec<f32> = inputs.iter().map(|&v| v as f32).collect();
    let shape: [usize; 4] = shape.as_slice().try_into().unwrap();
    // timm's layout (safetensors), DINOv2's under MAE's "model" key (.pth); torchvision's as is
    // and as a DDP checkpoint with its classifier (.pth).
    for (file, model, dropped) in [
        ("vit-p14-reg4.safetensors", "vit-p14-reg4", None),
        ("vit-p14-reg4.pth", "vit-p14-reg4", Some("mask_token")),
        ("resnet18-w8.safetensors", "resnet18-w8", Some("fc")),
        ("resnet18-w8.pth", "resnet18-w8", Some("fc")),
    ] {
        let imported =
            selfsup::weights::import_encoder(&dir.join(file), Some(56), None, &device).unwrap();
        if let Some(dropped) = dropped {
            assert!(
                imported.notes.iter().any(|n| n.contains(dropped)),
                "{file}: {:?}",
                imported.notes
            );
        }
        let x = Tensor::<4>::from_data(TensorData::new(inputs.clone(), shape), &device);
        let ours = selfsup::host::to_f32(imported.encoder.forward(x));
        let theirs = &fixtures[model].2;
        assert_eq!(ours.len(), theirs.len(), "{file}");
        let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = ours
            .iter()
            .zip(theirs)
            .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "{file}: max diff {worst} at scale {scale}"
        );
    }

    // At another image size the position table is resampled (and said so).
    let imported =
        selfsup::weights::import_encoder(&dir.join("vit-p14-reg4.pth"), Some(112), None, &device)
            .unwrap();
    assert!(
        imported.notes.iter().any(|n| n.contains("4×4 to a 8×8")),
        "{:?}",
        imported.notes
    );
    let x = Tensor::<4>::zeros([2, 1, 112, 112], &device);
    assert_eq!(imported.encoder.forward(x).dims(), [2, 128]);

    // Files that hold no encoder, or are not checkpoints, are one clear error.
    let err =
        selfsup::weights::import_encoder(&dir.join("inputs.safetensors"), None, None, &device)
            .err()
            .unwrap()
            .to_string();
    assert!(err.contains("no ViT") && err.contains("inputs"), "{err}");
    let err = selfsup::weights::import_encoder(&dir.join("README.md"), None, None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(".safetensors, .pth or .pt"), "{err}");
}
