//! The CNI plugin binary: the `type` of a kuryr network in a CNI config. All work is
//! done by the kuryr daemon (`kuryr serve`), reached over its CNI socket.

fn main() {
    std::process::exit(kuryr::cni::plugin::main());
}
