//! The netavark plugin binary: installed as `/usr/libexec/netavark/kuryr`, it is the
//! driver of `podman network create -d kuryr`. All work is done by the kuryr daemon
//! (`kuryr serve`), reached over its plugin socket.

fn main() {
    std::process::exit(kuryr::netavark::plugin::main());
}
