fn main() -> std::process::ExitCode {
    leger_backup::cli::main()
}
