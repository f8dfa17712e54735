mod cli;

use selfsup::allocator::Counting;
use selfsup::error::Error;

/// Counts live and peak heap bytes, for `selfsup plan --measure`.
#[global_allocator]
pub static ALLOC: Counting = Counting::new();

/// The library's error in one line, with what to type next where a command fixes it.
fn message(e: &Error) -> String {
    match e {
        Error::RunExists(_) => {
            format!("{e}; pass --resume to continue it, or choose another --out")
        }
        Error::NoCheckpoint(_) => {
            format!("{e}; train it first (start it again without --resume)")
        }
        Error::Unfinished(path) => format!(
            "{e}; finish it with `selfsup train --resume --out {}`",
            path.display()
        ),
        _ => e.to_string(),
    }
}

fn main() {
    selfsup::allocator::keep_freed_memory();
    selfsup::device::compute_on_this_thread();
    // A panic is a bug, not a user error: say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("selfsup: internal error: {info}. Please report this.");
    }));
    // A file-size limit (ulimit -f, quotas) then fails the write with an error that keeps the
    // last checkpoint, instead of killing the process mid-write.
    // SAFETY: setting a signal's disposition to ignore, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let args = cli::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("error: {}", message(&e));
        std::process::exit(e.exit_code());
    }
}
