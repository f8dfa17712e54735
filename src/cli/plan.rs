//! `selfsup plan`: the memory and compute of one training step, before running it.

use selfsup::allocator::MemoryMeter;
use selfsup::error::{Error, Result};
use selfsup::lab::plan::{
    Measured, Plan, default_shape, measure, plan, plan_recipe, published_arch,
};
use selfsup::method::MethodName;
use selfsup::nn::backbone::ImageShape;
use selfsup::nn::cost::total;
use selfsup::recipe::Overrides;

use super::args::PlanArgs;
use super::print_json;

pub(super) fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024f64.powi(3) {
        format!("{:.2} GiB", b / 1024f64.powi(3))
    } else if b >= 1024f64.powi(2) {
        format!("{:.1} MiB", b / 1024f64.powi(2))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn millions(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else {
        format!("{:.1}k", n as f64 / 1e3)
    }
}

/// This machine's RAM, from /proc/meminfo (None elsewhere).
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn plan_command(args: PlanArgs, meter: &dyn MemoryMeter) -> Result<()> {
    let method = args.method.as_deref().map(MethodName::parse).transpose()?;
    if method.is_none() && args.recipe.is_none() {
        return Err(Error::Usage(
            "no method given: pass --method (see `selfsup methods`) or a --recipe".into(),
        ));
    }
    let mut sets = Vec::new();
    if let Some(arch) = &args.arch {
        let large = args.image_size.is_some_and(|s| s >= 64);
        sets.extend(published_arch(arch, large));
    }
    if let Some(k) = args.queue {
        sets.push(format!("method.queue_size={k}"));
    }
    sets.extend(args.sets.iter().cloned());
    let overrides = Overrides {
        method,
        recipe_file: args.recipe.clone(),
        batch_size: args.batch_size,
        sets,
        ..Overrides::default()
    };
    let recipe = plan_recipe(&overrides, args.image_size)?;
    let mut shape = default_shape(&recipe);
    if args.image_size.is_some() {
        shape.channels = 3;
    }
    if let Some(c) = args.channels {
        shape.channels = c;
    }
    let batch = recipe.train.batch_size;
    let limit = match args.memory {
        Some(g) if g > 0.0 => (g * 1024f64.powi(3)) as u64,
        Some(g) => return Err(Error::Usage(format!("--memory {g}: give GiB, e.g. 80"))),
        None => machine_memory().unwrap_or(16 << 30),
    };
    let planned = plan(&recipe, shape, batch, Some(limit))?;
    let measured = args
        .measure
        .then(|| measure(&recipe, shape, batch, meter))
        .transpose()?;
    if args.json {
        print_json(&serde_json::json!({
            "plan": planned,
            "total_bytes": planned.memory.total(),
            "measured": measured.map(|m| serde_json::json!({
                "batch": m.batch,
                "persistent_bytes": m.persistent,
                "step_bytes": m.step,
                "total_bytes": m.total(),
                "planned_total_bytes": m.planned_total(),
                "error": m.error(),
            })),
        }));
        return Ok(());
    }
    print!("{}", plan_table(&planned, shape));
    if let Some(fit) = planned.fit {
        match fit.largest_batch {
            Some(b) => println!("Largest batch that fits {}: {b}", gib(fit.memory)),
            None => println!("Not even one image fits {}.", gib(fit.memory)),
        }
    }
    if let Some(m) = measured {
        print!("{}", measured_table(&m));
    }
    Ok(())
}

fn plan_table(p: &Plan, shape: ImageShape) -> String {
    let views = p
        .views
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "Plan of one training step: {} · {} · {}×{}×{} images · batch {} · views of {views} px · {:?}\n\n",
        p.method.as_str(),
        p.model,
        shape.channels,
        shape.side,
        shape.side,
        p.batch,
        p.optimizer
    );
    s += &format!(
        "  {:<26} {:>14} {:>10} {:>11} {:>13}\n",
        "network / stage", "output", "params", "GMAC/view", "kept/view"
    );
    for pass in &p.passes {
        let kind = if pass.trained {
            "trained"
        } else {
            "no gradient: keeps nothing"
        };
        s += &format!("  {} ({} view(s), {kind})\n", pass.network, pass.views);
        for stage in &pass.stages {
            s += &format!(
                "    {:<24} {:>14} {:>10} {:>11.3} {:>13}\n",
                stage.name,
                stage.output,
                millions(stage.params),
                stage.cost.macs as f64 / 1e9,
                gib(stage.cost.saved * 4)
            );
        }
        let t = total(&pass.stages);
        s += &format!(
            "    {:<24} {:>14} {:>10} {:>11.3} {:>13}\n",
            "total",
            "",
            "",
            t.macs as f64 / 1e9,
            gib(t.saved * 4)
        );
    }
    let m = &p.memory;
    s += &format!("\nMemory of one step at batch {}:\n", p.batch);
    let rows = [
        (
            format!(
                "weights ({} trained + {} untrained parameters and statistics)",
                millions(p.params.trained),
                millions(p.params.frozen)
            ),
            m.weights,
        ),
        ("gradients".to_string(), m.gradients),
        (format!("optimizer state ({:?})", p.optimizer), m.optimizer),
        ("input views".to_string(), m.inputs),
        (
            format!(
                "activations kept for backward ({} per image)",
                gib(p.activations_per_image)
            ),
            m.activations,
        ),
        ("loss (similarities, logits)".to_string(), m.loss),
        ("backward working set".to_string(), m.backward),
    ];
    let peak = format!(
        "activations + gradients at the backward pass's peak: {}",
        gib(m.backward_peak)
    );
    for (what, bytes) in rows {
        s += &format!("  {what:<66} {:>11}\n", gib(bytes));
    }
    s += &format!(
        "  {:<66} {:>11}\n  ({peak}; weights, optimizer state, inputs, loss and working set on top)\n",
        "peak",
        gib(m.total())
    );
    s += &format!(
        "\nCompute: the encoder's forward pass is {:.3} GMAC per {}-px view; a training step is {:.2} GFLOP per image (forward + backward of every view, targets forward only).\n",
        p.encoder_gmacs,
        p.views.first().copied().unwrap_or(shape.side),
        p.train_gflops_per_image
    );
    s
}

fn measured_table(m: &Measured) -> String {
    format!(
        "\nMeasured (two real steps on the CPU at batch {}, the second counted by the allocator):\n  {:<36} {:>11} {:>11}\n  {:<36} {:>11} {:>11}\n  {:<36} {:>11} {:>11}\n  {:<36} {:>11} {:>11}\n  The plan is {:+.1}% off the measured peak.\n",
        m.batch,
        "",
        "planned",
        "measured",
        "held between steps",
        gib(m.planned_persistent),
        gib(m.persistent),
        "allocated during the step",
        gib(m.planned_step),
        gib(m.step),
        "peak",
        gib(m.planned_total()),
        gib(m.total()),
        100.0 * m.error()
    )
}
