use clap::Parser;

fn main() {
    selfsup::allocator::keep_freed_memory();
    // A panic is a bug, not a user error: say so in one line, without a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("selfsup: internal error: {info}. Please report this.");
    }));
    let cli = selfsup::cli::Cli::parse();
    if let Err(e) = selfsup::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
