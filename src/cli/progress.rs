//! Training's progress bar and messages, drawn from the library's training events.

use indicatif::{ProgressBar, ProgressStyle};

use selfsup::train::{Event, Observer};

/// Draws a progress bar on stderr (hidden with `--json` or when asked), with warnings and online
/// evaluations printed above it — or straight to stderr when there is no bar, so they are never
/// swallowed.
pub struct TrainProgress {
    bar: ProgressBar,
    method: String,
}

impl TrainProgress {
    pub fn new(visible: bool) -> Self {
        TrainProgress {
            bar: bar(
                visible,
                "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
            ),
            method: String::new(),
        }
    }

    /// Removes the bar (before a message that ends the run).
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    fn say(&self, line: String) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Observer for TrainProgress {
    fn observe(&mut self, event: &Event) {
        match event {
            Event::Started {
                method,
                total_steps,
                start_step,
                restarted,
                ..
            } => {
                if *restarted {
                    self.say(
                        "the run directory held a run stopped before its first checkpoint: starting it again from step 0".into(),
                    );
                }
                self.method = method.to_string();
                self.bar.set_length(*total_steps as u64);
                self.bar.set_position(*start_step as u64);
            }
            Event::EpochStarted { epoch, epochs } => {
                self.bar
                    .set_prefix(format!("{} epoch {}/{}", self.method, epoch + 1, epochs));
            }
            Event::StepFinished { step, .. } => self.bar.set_position(*step as u64),
            Event::Logged(line) => self.bar.set_message(format!(
                "loss {:.4}  std {:.3} (healthy {:.3})  rank {:.1}  {:.0} img/s",
                line.loss,
                line.embedding_std,
                line.healthy_std,
                line.effective_rank,
                line.images_per_s
            )),
            Event::Warning(w) => self.say(format!("warning: {}", w.message)),
            Event::EpochEvaluated {
                epoch,
                knn_top1,
                held_out,
                ..
            } => self.say(format!(
                "epoch {epoch}: kNN top-1 {knn_top1:.4} on {held_out} held-out images"
            )),
            Event::CheckpointWritten { .. } => {}
            Event::Finished => self.bar.finish_and_clear(),
        }
    }
}

/// A bar for the stages of fine-tuning (`what`, `done` of `total` steps).
pub fn stage_bar(visible: bool) -> ProgressBar {
    bar(visible, "{msg} [{bar:30}] {pos}/{len} steps  ETA {eta}")
}

/// A progress bar on stderr drawn with `template`, or a hidden one.
fn bar(visible: bool, template: &str) -> ProgressBar {
    let bar = if visible {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A bar over images (`embed`).
pub fn image_bar(visible: bool) -> ProgressBar {
    bar(
        visible,
        "embedding [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}",
    )
}
