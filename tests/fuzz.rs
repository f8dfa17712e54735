//! Every reader of outside input fed thousands of truncated, bit-flipped, spliced and random
//! inputs (a seeded mutation loop, reproducible from the seed printed on failure): none may
//! panic, and none may ask for an allocation out of proportion to what it read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use selfsup::data::ImageSet;
use selfsup::nn::backbone::ImageShape;
use selfsup::recipe::{Overrides, Recipe};

/// The largest single allocation asked for on this thread since the last reset.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Mutations of valid inputs: what a cut download, a flipped bit on disk or a wrong file gives.
struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    fn new(seed: u64) -> Self {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// A position, biased towards the start where headers live.
    fn position(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        if self.rng.random_bool(0.6) {
            self.rng.random_range(0..len.min(512))
        } else {
            self.rng.random_range(0..len)
        }
    }

    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut data = seed.to_vec();
        for _ in 0..self.rng.random_range(1..=3) {
            let len = data.len();
            match self.rng.random_range(0..8) {
                0 => data.truncate(self.rng.random_range(0..=len)),
                1 => {
                    for _ in 0..self.rng.random_range(1..=8) {
                        if !data.is_empty() {
                            let at = self.position(len);
                            data[at] ^= 1 << self.rng.random_range(0..8);
                        }
                    }
                }
                2 => {
                    // Extreme values where lengths and dimensions live.
                    let at = self.position(len);
                    let run = self.rng.random_range(1..=8).min(len - at.min(len));
                    let byte = [0x00, 0xFF, 0x7F, 0x80][self.rng.random_range(0..4)];
                    data[at..at + run].fill(byte);
                }
                3 => {
                    let at = self.position(len);
                    let chunk: Vec<u8> = (0..self.rng.random_range(1..64))
                        .map(|_| self.rng.random())
                        .collect();
                    data.splice(at.min(len)..at.min(len), chunk);
                }
                4 if len > 0 => {
                    let at = self.position(len);
                    let end = (at + self.rng.random_range(1..256)).min(len);
                    data.drain(at..end);
                }
                5 if len > 0 => {
                    // Repeat a slice elsewhere.
                    let from = self.rng.random_range(0..len);
                    let end = (from + self.rng.random_range(1..128)).min(len);
                    let slice = data[from..end].to_vec();
                    let at = self.position(len);
                    data.splice(at..at, slice);
                }
                6 => {
                    let n = self.rng.random_range(0..(2 * len).max(64));
                    data = (0..n).map(|_| self.rng.random()).collect();
                }
                _ => {
                    if !data.is_empty() {
                        let at = self.position(len);
                        data[at] = self.rng.random();
                    }
                }
            }
        }
        data
    }

    /// Text mutations stay text most of the time (what an editor or a shell produces).
    fn mutate_text(&mut self, seed: &str) -> String {
        if self.rng.random_bool(0.3) {
            return String::from_utf8_lossy(&self.mutate(seed.as_bytes())).into_owned();
        }
        const PIECES: [&str; 16] = [
            "=",
            "[",
            "]",
            "\"",
            "'",
            ".",
            "\n",
            "-1",
            "1e999",
            "nan",
            "{",
            "}",
            "0x",
            "#",
            "18446744073709551616",
            "ü",
        ];
        let mut text = seed.to_string();
        for _ in 0..self.rng.random_range(1..=3) {
            let mut at = self.rng.random_range(0..=text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match self.rng.random_range(0..3) {
                0 => text.insert_str(at, PIECES[self.rng.random_range(0..PIECES.len())]),
                1 => {
                    let mut end = (at + self.rng.random_range(1..12)).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(at..end, "");
                }
                _ => text.truncate(at),
            }
        }
        text
    }
}

/// [`Mutator::mutate_text`] of a UTF-8 seed, as bytes.
fn mutate_text(mutator: &mut Mutator, seed: &[u8]) -> Vec<u8> {
    mutator
        .mutate_text(std::str::from_utf8(seed).expect("text seeds are UTF-8"))
        .into_bytes()
}

/// A JSON document with one value replaced by an extreme or mistyped one (what a hand edit or a
/// tool gone wrong gives), as bytes; or a byte-level mutation.
fn mutate_json(mutator: &mut Mutator, seed: &[u8]) -> Vec<u8> {
    if mutator.rng.random_bool(0.3) {
        return mutator.mutate(seed);
    }
    let mut doc: serde_json::Value = serde_json::from_slice(seed).unwrap();
    let mut leaves = Vec::new();
    collect_pointers(&doc, String::new(), &mut leaves);
    let at = &leaves[mutator.rng.random_range(0..leaves.len())];
    let replacement = match mutator.rng.random_range(0..9) {
        0 => serde_json::json!(0),
        1 => serde_json::json!(-1),
        2 => serde_json::json!(u64::MAX),
        3 => serde_json::json!(1e308),
        4 => serde_json::json!("x"),
        5 => serde_json::Value::Null,
        6 => serde_json::json!([]),
        7 => serde_json::json!(1u64 << 40),
        _ => serde_json::json!([1, 2, 3, 4, 5, 6, 7]),
    };
    *doc.pointer_mut(at).unwrap() = replacement;
    serde_json::to_vec(&doc).unwrap()
}

fn collect_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                collect_pointers(v, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Runs `cases` mutations of `seeds` through `read`, which gets the case's bytes; asserts no
/// single allocation grew past `max_alloc`. Returns how many inputs were accepted.
fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    cases: usize,
    max_alloc: usize,
    read: impl FnMut(&[u8]) -> bool,
) -> usize {
    fuzz_with(name, seeds, cases, max_alloc, Mutator::mutate, read)
}

fn fuzz_with(
    name: &str,
    seeds: &[Vec<u8>],
    cases: usize,
    max_alloc: usize,
    mutate: fn(&mut Mutator, &[u8]) -> Vec<u8>,
    mut read: impl FnMut(&[u8]) -> bool,
) -> usize {
    let mut mutator = Mutator::new(0x5e1f_5e1f);
    let mut accepted = 0;
    // The unmutated seeds must be accepted: the harness reaches the reader's real paths.
    for seed in seeds {
        assert!(read(seed), "{name}: a valid seed input was refused");
    }
    LARGEST.with(|l| l.set(0));
    for case in 0..cases {
        let input = mutate(&mut mutator, &seeds[case % seeds.len()]);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&input)));
        match ok {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => {
                let dump = std::env::temp_dir().join(format!("selfsup-fuzz-{name}-{case}.bin"));
                std::fs::write(&dump, &input).unwrap();
                panic!(
                    "{name}: case {case} panicked; input saved to {}",
                    dump.display()
                );
            }
        }
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= max_alloc,
            "{name}: case {case} allocated {largest} bytes at once ({} byte input)",
            input.len()
        );
    }
    eprintln!("{name}: {cases} cases, {accepted} accepted");
    accepted
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_set(n: usize, side: usize, channels: usize) -> ImageSet {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    ImageSet {
        pixels: (0..n * side * side * channels)
            .map(|_| rng.random())
            .collect(),
        channels,
        height: side,
        width: side,
        labels: Some((0..n as u32).map(|i| i % 10).collect()),
        classes: (0..10).map(|c| c.to_string()).collect(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const MIB: usize = 1 << 20;

#[test]
fn idx_files() {
    let dir = scratch("idx");
    let set = tiny_set(12, 8, 1);
    let images = selfsup::data::idx::encode_images(&set);
    let labels = selfsup::data::idx::encode_labels(set.labels.as_ref().unwrap());
    // One file of the split damaged at a time, the other valid; gzip or raw (told by its magic).
    for (name, seed, other) in [
        ("idx images", &images, ("train-labels-idx1-ubyte", &labels)),
        ("idx labels", &labels, ("train-images-idx3-ubyte", &images)),
    ] {
        let damaged = if other.0.contains("labels") {
            "train-images-idx3-ubyte"
        } else {
            "train-labels-idx1-ubyte"
        };
        std::fs::write(dir.join(other.0), other.1).unwrap();
        fuzz(name, &[seed.clone(), gzip(seed)], 2000, MIB, |bytes| {
            std::fs::write(dir.join(damaged), bytes).unwrap();
            match selfsup::data::idx::read_split(&dir, "train") {
                Ok(read) => {
                    assert_eq!(read.pixels.len(), read.len() * read.height * read.width);
                    assert!(read.height > 0 && read.width > 0);
                    if let Some(l) = &read.labels {
                        assert!(l.iter().all(|&c| (c as usize) < read.classes.len()));
                    }
                    true
                }
                Err(_) => false,
            }
        });
    }
}

#[test]
fn cifar_batches() {
    let dir = scratch("cifar");
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..3072).map(|i| (i % 251) as u8));
        r
    };
    let seed: Vec<u8> = (0..3).flat_map(|i| record(i as u8)).collect();
    fuzz(
        "cifar",
        std::slice::from_ref(&seed),
        2000,
        4 * MIB,
        |bytes| {
            std::fs::write(dir.join("data_batch_1.bin"), bytes).unwrap();
            std::fs::write(dir.join("test_batch.bin"), &seed).unwrap();
            match selfsup::data::cifar::read(&dir, selfsup::data::cifar::Variant::Cifar10) {
                Ok((train, _)) => {
                    assert_eq!(train.pixels.len(), train.len() * 3 * 32 * 32);
                    let labels = train.labels.unwrap();
                    assert!(labels.iter().all(|&c| c < 10));
                    true
                }
                Err(_) => false,
            }
        },
    );
}

fn encoded(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

#[test]
fn image_decoding() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let rgb = image::RgbImage::from_fn(24, 16, |_, _| image::Rgb(rng.random()));
    let rgb = image::DynamicImage::ImageRgb8(rgb);
    let gray16 = image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(12, 9, |x, y| {
        image::Luma([(x * 4000 + y * 300) as u16])
    }));
    let rgba = image::DynamicImage::ImageRgba8(rgb.to_rgba8());
    let seeds = vec![
        encoded(&rgb, image::ImageFormat::Jpeg),
        encoded(&rgb, image::ImageFormat::Png),
        encoded(&gray16, image::ImageFormat::Png),
        encoded(&rgba, image::ImageFormat::WebP),
        encoded(&rgb, image::ImageFormat::Bmp),
    ];
    // The decoder's own limit (image's default, 512 MiB) bounds a header that lies about its size.
    fuzz("image", &seeds, 20000, 600 * MIB, |bytes| {
        let header = selfsup::data::decode::header(bytes);
        match selfsup::data::decode::decode(bytes, 3) {
            Ok(d) => {
                assert_eq!(d.pixels.len(), 3 * d.height * d.width);
                if let Ok(h) = header {
                    assert_eq!((h.width, h.height), (d.width, d.height));
                }
                true
            }
            Err(_) => false,
        }
    });
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn webdataset_shards() {
    let dir = scratch("wds");
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(8, 8));
    let png = encoded(&img, image::ImageFormat::Png);
    let seed = tar_of(&[
        ("a.png", &png),
        ("a.cls", b"3"),
        ("b.png", &png),
        ("b.cls", b"1"),
    ]);
    let shard = dir.join("shard-000.tar");
    fuzz("webdataset", &[seed], 2000, 4 * MIB, |bytes| {
        std::fs::write(&shard, bytes).unwrap();
        match selfsup::data::webdataset::index(std::slice::from_ref(&shard)) {
            Ok(index) => {
                if let Some(labels) = &index.labels {
                    assert!(labels.iter().all(|&c| (c as usize) < index.classes.len()));
                }
                true
            }
            Err(_) => false,
        }
    });
}

fn builtin_recipe_texts() -> Vec<Vec<u8>> {
    selfsup::method::MethodName::ALL
        .iter()
        .map(|m| m.builtin_recipe().as_bytes().to_vec())
        .collect()
}

#[test]
fn recipe_files() {
    let dir = scratch("recipe");
    let file = dir.join("recipe.toml");
    let mut seeds = builtin_recipe_texts();
    let resolved = Recipe::resolve(&Overrides {
        method: Some(selfsup::method::MethodName::Dino),
        ..Default::default()
    })
    .unwrap();
    seeds.push(resolved.to_toml().into_bytes());
    let mut case = 0usize;
    fuzz_with(
        "recipe files",
        &seeds,
        3000,
        4 * MIB,
        mutate_text,
        |bytes| {
            case += 1;
            std::fs::write(&file, bytes).unwrap();
            // As --recipe (layered over the defaults) and as a run's recipe.toml.
            let a = Recipe::resolve(&Overrides {
                recipe_file: Some(file.clone()),
                method: case
                    .is_multiple_of(2)
                    .then_some(selfsup::method::MethodName::Dino),
                ..Default::default()
            });
            let b = Recipe::load(&file);
            a.is_ok() || b.is_ok()
        },
    );
}

#[test]
fn set_assignments() {
    let seeds = [
        "optim.base_lr=0.1",
        "augment.crop_scale=[0.3, 1.0]",
        "method.projector=[32, 16]",
        "train.epochs=3",
        "data.path=\"some/where\"",
        "model.arch=vit-tiny",
        "method.center_momentum=0.9",
        "augment.local_crops=6",
    ]
    .map(|s| s.as_bytes().to_vec());
    fuzz_with("--set", &seeds, 3000, 4 * MIB, mutate_text, |bytes| {
        Recipe::resolve(&Overrides {
            method: Some(selfsup::method::MethodName::Dino),
            sets: vec![String::from_utf8_lossy(bytes).into_owned()],
            ..Default::default()
        })
        .is_ok()
    });
}

/// A real run directory's files (recipe, run.json, checkpoint) from one short BYOL run.
fn tiny_run() -> &'static Path {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("run").join("run");
        let recipe = Recipe::resolve(&Overrides {
            method: Some(selfsup::method::MethodName::Byol),
            epochs: Some(1),
            batch_size: Some(16),
            sets: [
                "model.width=2",
                "data.max_images=32",
                "method.projector=[8, 8]",
                "method.predictor=[8, 8]",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        })
        .unwrap();
        let splits = recipe.load_data().unwrap();
        let options = selfsup::train::TrainOptions::new(&dir);
        let (trainer, method) =
            selfsup::train::Trainer::set_up::<selfsup::method::Byol>(&recipe, &splits, &options)
                .unwrap();
        trainer.run(method, &mut selfsup::train::Silent).unwrap();
        dir
    })
}

#[test]
fn run_json_and_position_json() {
    let run = tiny_run();
    let dir = scratch("run-json").join("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(run.join("recipe.toml"), dir.join("recipe.toml")).unwrap();
    let info = std::fs::read(run.join("run.json")).unwrap();
    fuzz_with("run.json", &[info], 2000, MIB, mutate_json, |bytes| {
        std::fs::write(dir.join("run.json"), bytes).unwrap();
        match selfsup::run::Run::open(&dir) {
            Ok(opened) => {
                let i = &opened.info;
                assert!(matches!(i.channels, 1 | 3) && i.image_side > 0);
                assert_eq!((i.mean.len(), i.std.len()), (i.channels, i.channels));
                true
            }
            Err(_) => false,
        }
    });
    let position = std::fs::read(run.join("checkpoint/position.json")).unwrap();
    // The tiny run has 2 batches per epoch.
    fuzz_with(
        "position.json",
        &[position],
        2000,
        MIB,
        mutate_json,
        |bytes| {
            let path = dir.join("position.json");
            std::fs::write(&path, bytes).unwrap();
            selfsup::run::read_json::<selfsup::run::checkpoint::Position>(&path)
                .is_ok_and(|p| p.check(2).is_ok())
        },
    );
}

/// A resume of a damaged checkpoint fails with an error, or continues (the damage hit values
/// only) — never panics.
#[test]
fn checkpoints() {
    let run = tiny_run();
    let device = burn::tensor::Device::flex();
    let recipe = Recipe::load(&run.join("recipe.toml")).unwrap();
    let shape = ImageShape {
        channels: 1,
        side: 28,
    };
    let dir = scratch("checkpoint");
    let model = std::fs::read(run.join("checkpoint/model.bpk")).unwrap();
    let path = dir.join("model.bpk");
    let fresh = || {
        recipe
            .init_method::<selfsup::method::Byol>(shape, &device, &selfsup::method::NoRuns)
            .unwrap()
    };
    let sizes = |m: &selfsup::method::Byol| {
        selfsup::host::named_values(m)
            .into_iter()
            .map(|(name, v)| (name, v.len()))
            .collect::<Vec<_>>()
    };
    let expected = sizes(&fresh());
    fuzz(
        "model.bpk",
        std::slice::from_ref(&model),
        1500,
        4 * MIB,
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match selfsup::run::load_module(fresh(), &path) {
                // Whatever loads has every tensor at its own size: no shape error later.
                Ok(loaded) => {
                    assert_eq!(sizes(&loaded), expected);
                    true
                }
                Err(_) => false,
            }
        },
    );
    let optimizer = std::fs::read(run.join("checkpoint/optimizer.safetensors")).unwrap();
    let method = recipe
        .init_method::<selfsup::method::Byol>(shape, &device, &selfsup::method::NoRuns)
        .unwrap();
    let method = selfsup::run::load_module(method, &run.join("checkpoint/model.bpk")).unwrap();
    let path = dir.join("optimizer.safetensors");
    fuzz(
        "optimizer.safetensors",
        &[optimizer],
        1500,
        4 * MIB,
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let mut opt = selfsup::optim::Optimizer::new(recipe.optim.clone());
            opt.load_for(&path, &method, &device).is_ok()
        },
    );
}

#[test]
fn pretrained_weights() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
    let device = burn::tensor::Device::flex();
    let dir = scratch("import");
    for name in ["resnet18-w8.safetensors", "resnet18-w8.pth"] {
        let seed = std::fs::read(fixtures.join(name)).unwrap();
        let path = dir.join(name);
        fuzz(name, &[seed], 400, 64 * MIB, |bytes| {
            std::fs::write(&path, bytes).unwrap();
            selfsup::weights::import_encoder(&path, None, None, &device).is_ok()
        });
    }
}
