//! Streamed datasets end to end: files and shards decoded per batch give the same images as the
//! in-memory path, unreadable images are skipped (counted, named) or stop the run with a
//! checkpoint kept, and training on mixed-size folders works through the command line.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::photos::{self, Size, Source, Spec};
use common::{json, path, run, scratch, stderr};
use selfsup::augment::AugmentConfig;
use selfsup::data::loader::{Loader, Normalize};
use selfsup::data::{Images, LoadOptions, OnCorrupt, Stream};

fn mixed_folder(name: &str, train: usize, corrupt: usize) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    let spec = Spec {
        source: Source::Fashion(selfsup::data::bundled_path()),
        train,
        val: train / 4,
        size: Size::Mixed { min: 32, max: 120 },
        corrupt,
        jpeg_only: false,
        seed: 7,
    };
    let (images, _) = photos::generate(&spec);
    let folder = root.join("folder");
    photos::write_folder(&folder, &images);
    let shards = root.join("shards");
    photos::write_shards(&shards, &images, 100);
    (folder, shards)
}

fn stream_options(side: usize, on_corrupt: OnCorrupt) -> LoadOptions {
    LoadOptions {
        view_side: Some(side),
        on_corrupt,
        shuffle_buffer: 50,
        ..LoadOptions::default()
    }
}

fn stream_of(images: &Images) -> &Arc<Stream> {
    match images {
        Images::Stream(stream) => stream,
        Images::Memory(_) => panic!("expected a streamed set"),
    }
}

fn loader(images: Images, on_batch: usize) -> Arc<Loader> {
    let normalize = Normalize {
        mean: vec![0.5; images.channels()],
        std: vec![0.25; images.channels()],
    };
    let augment = AugmentConfig {
        size: images.side(),
        ..AugmentConfig::default()
    };
    Arc::new(Loader::new(images, augment, normalize, on_batch, 3))
}

#[test]
fn a_corrupt_image_mid_epoch_is_skipped_and_named_or_stops_the_load() {
    let (folder, _) = mixed_folder("corrupt-loader", 300, 1);
    let splits = selfsup::data::load(Some(&folder), &stream_options(28, OnCorrupt::Skip)).unwrap();
    assert!(
        splits.corrupt.is_empty(),
        "its header reads, so only decoding finds it"
    );
    let stream = stream_of(&splits.train);
    assert_eq!(stream.len(), 301);
    let l = loader(splits.train.clone(), 301);
    let batch = l.epoch(0, 0).recv().unwrap().unwrap();
    let names: Vec<&str> = batch.corrupt.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with("corrupt-000.jpg"), "{names:?}");
    assert!(
        batch.corrupt[0].reason.contains("truncated"),
        "{:?}",
        batch.corrupt
    );
    assert_eq!(batch.size, 301, "a neighbour took its place");

    let failing = selfsup::data::load(Some(&folder), &stream_options(28, OnCorrupt::Fail)).unwrap();
    let l = loader(failing.train.clone(), 301);
    let err = l
        .epoch(0, 0)
        .recv()
        .unwrap()
        .err()
        .expect("fail stops the batch");
    let message = err.into_error().to_string();
    assert!(
        message.contains("corrupt-000.jpg") && message.contains("on_corrupt"),
        "{message}"
    );
}

#[test]
fn streamed_files_give_exactly_the_in_memory_batches() {
    // The bundled images written as lossless 28×28 PNGs load into memory (one square size);
    // the same files streamed must give bit-identical training batches.
    let dir = scratch("stream-equals-memory");
    let bundled = selfsup::data::idx::read_split(&selfsup::data::bundled_path(), "train").unwrap();
    let set = bundled.take(96);
    for i in 0..set.len() {
        let class = dir.join(format!("c{}", set.labels.as_ref().unwrap()[i]));
        std::fs::create_dir_all(&class).unwrap();
        image::GrayImage::from_raw(28, 28, set.image(i).to_vec())
            .unwrap()
            .save(class.join(format!("{i:03}.png")))
            .unwrap();
    }
    let splits = selfsup::data::load(Some(&dir), &LoadOptions::default()).unwrap();
    let Images::Memory(memory) = &splits.train else {
        panic!(
            "a small folder of one square size stays in memory: {}",
            splits.description
        )
    };
    let index = selfsup::data::folder::list(&dir).unwrap();
    let stream = Images::Stream(Arc::new(Stream {
        index,
        channels: 1,
        side: 28,
        on_corrupt: OnCorrupt::Fail,
        shuffle_buffer: 1,
    }));
    let (a, b) = (
        loader(Images::Memory(memory.clone()), 32),
        loader(stream, 32),
    );
    let (a, b): (Vec<_>, Vec<_>) = (
        a.epoch(1, 0).iter().collect(),
        b.epoch(1, 0).iter().collect(),
    );
    assert_eq!(a.len(), 3);
    for (x, y) in a.into_iter().zip(b) {
        assert_eq!(x.unwrap().views, y.unwrap().views);
    }
}

#[test]
fn shards_hold_the_same_images_and_labels_as_the_folder() {
    let (folder, shards) = mixed_folder("shards-equal-folder", 240, 0);
    let options = stream_options(40, OnCorrupt::Fail);
    let from_folder = selfsup::data::load(Some(&folder), &options).unwrap();
    let from_shards = selfsup::data::load(Some(&shards), &options).unwrap();
    assert!(
        from_shards.description.contains("WebDataset"),
        "{}",
        from_shards.description
    );
    let pixels_and_label = |images: &Images| -> BTreeSet<(Vec<u8>, u32)> {
        let stream = stream_of(images);
        let labels = stream.index.labels.as_ref().expect("labelled");
        (0..stream.len())
            .map(|i| (stream.decode(i).unwrap().pixels, labels[i]))
            .collect()
    };
    for (a, b) in [
        (&from_folder.train, &from_shards.train),
        (
            from_folder.test.as_ref().unwrap(),
            from_shards.test.as_ref().unwrap(),
        ),
    ] {
        assert_eq!(a.len(), b.len());
        // Class folders are named class0…class9 and .cls holds the digit: the labels agree.
        assert_eq!(pixels_and_label(a), pixels_and_label(b));
    }
    // The shard order reads shards one after another through the buffer; every image once.
    let stream = stream_of(&from_shards.train);
    let mut order = stream.order(0, 0);
    order.sort_unstable();
    assert_eq!(order, (0..stream.len()).collect::<Vec<_>>());
}

#[test]
fn training_on_a_mixed_size_folder_and_its_shards_through_the_command_line() {
    let (folder, shards) = mixed_folder("stream-cli", 400, 1);
    let out = scratch("stream-cli-runs");
    let train = |data: &Path, name: &str, extra: &[&str]| {
        let dir = out.join(name);
        let mut args = vec![
            "train",
            "--method",
            "simclr",
            "--data",
            path(data),
            "--epochs",
            "2",
            "--batch-size",
            "100",
            "--out",
            path(&dir),
            "--json",
            "--set",
            "augment.size=32",
        ];
        args.extend(extra);
        (run(&args), dir)
    };

    // Without a crop side, mixed sizes are a clear error that says what to set.
    let (no_side, _) = train(&folder, "no-side", &["--set", "augment.size=0"]);
    common::assert_clean_error(&no_side, "augment.size");

    let (ok, dir) = train(&folder, "folder", &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report = json(&ok);
    assert!(
        report["eval"]["data"]
            .as_str()
            .unwrap()
            .contains("streamed"),
        "{report}"
    );
    assert_eq!(report["train"]["corrupt_images"], 1, "{report}");
    let named = report["train"]["corrupt_examples"][0]["name"]
        .as_str()
        .unwrap();
    assert!(named.ends_with("corrupt-000.jpg"), "{named}");
    assert!(
        stderr(&ok).contains("skipped unreadable image"),
        "{}",
        stderr(&ok)
    );
    assert_eq!(
        report["eval"]["train_images"], 400,
        "the val split is the held-out part"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["image_side"], 32);

    // With on_corrupt = fail the run stops naming the file, keeps a checkpoint, and resumes
    // once the file is gone.
    let (failed, dir) = train(&folder, "fail", &["--set", "data.on_corrupt=fail"]);
    common::assert_clean_error(&failed, "corrupt-000.jpg");
    assert!(stderr(&failed).contains("--resume"), "{}", stderr(&failed));
    assert!(dir.join("checkpoint").join("position.json").is_file());
    let bad = std::fs::read_dir(folder.join("train"))
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().is_some_and(|n| n == "corrupt-000.jpg"))
        .unwrap();
    std::fs::remove_file(bad).unwrap();
    let resumed = run(&[
        "train",
        "--resume",
        "--out",
        path(&dir),
        "--json",
        "--no-eval",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));

    let (from_shards, _) = train(&shards, "shards", &[]);
    assert!(from_shards.status.success(), "{}", stderr(&from_shards));
    let report = json(&from_shards);
    assert!(
        report["eval"]["data"]
            .as_str()
            .unwrap()
            .contains("WebDataset"),
        "{report}"
    );
    assert_eq!(
        report["train"]["corrupt_images"], 1,
        "the shards carry the corrupt JPEG too"
    );
}
