fn main() {
    std::process::exit(xmppd::cli::run());
}
