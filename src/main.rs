//! `isobench`: measures what isolation costs. See [`isobench::cli`].

fn main() -> std::process::ExitCode {
    isobench::cli::main()
}
