//! A container's network namespace, as CNI hands it over (`CNI_NETNS`, a path such as
//! `/proc/<pid>/ns/net` or `/run/netns/<name>`): what Docker does for a libnetwork driver
//! (move the container end in, name it, address it, route it), done by kuryr.
//!
//! Work inside a namespace runs on a thread of its own that enters it with `setns(2)`
//! and ends with the work, so no thread of kuryr's runtime is ever left in a container's
//! namespace.

use std::future::Future;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::Pin;

use ipnet::IpNet;

use super::netlink::{Netlink, Result};
use super::HostError;

/// The container interface as CNI asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsInterface {
    /// `CNI_IFNAME`.
    pub ifname: String,
    pub mac: String,
    pub mtu: Option<u32>,
    pub addrs: Vec<IpNet>,
    /// Destination and gateway (on-link when none).
    pub routes: Vec<(IpNet, Option<IpAddr>)>,
}

/// What a namespace holds under an interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsLink {
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub addrs: Vec<IpNet>,
}

type Job<T> = Box<dyn FnOnce(Netlink) -> Pin<Box<dyn Future<Output = Result<T>> + Send>> + Send>;

pub(super) fn open(netns: &Path) -> Result<std::fs::File> {
    std::fs::File::open(netns)
        .map_err(|e| HostError::NotFound(format!("network namespace {}: {e}", netns.display())))
}

/// Runs `job` with a netlink connection inside the namespace at `netns`.
async fn inside<T: Send + 'static>(netns: &Path, job: Job<T>) -> Result<T> {
    let file = open(netns)?;
    let path = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kuryr-netns".into())
        .spawn(move || {
            let _ = tx.send(run_inside(file, &path, job));
        })
        .map_err(|e| HostError::Invalid(format!("cannot start a thread: {e}")))?;
    rx.await
        .map_err(|_| HostError::Invalid(format!("work in {} ended early", netns.display())))?
}

/// Runs blocking `f` on a thread inside the namespace at `netns` (an ioctl, which acts
/// on its caller's namespace).
pub async fn blocking_inside<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    inside(
        netns,
        Box::new(move |_nl: Netlink| Box::pin(async move { f() })),
    )
    .await
}

fn run_inside<T>(file: std::fs::File, path: &Path, job: Job<T>) -> Result<T> {
    // SAFETY: setns(2) on a descriptor we own; it changes only this thread, which ends
    // with the job.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(HostError::Netlink {
            op: "enter namespace".into(),
            name: path.display().to_string(),
            message: e.to_string(),
            errno: e.raw_os_error(),
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HostError::Invalid(format!("runtime in namespace: {e}")))?;
    rt.block_on(async move {
        let nl = Netlink::connect()?;
        job(nl).await
    })
}

/// Moves host link `link` into the namespace (unless it is there already) as
/// `want.ifname` and configures it there:
/// MAC, MTU, addresses, up, then routes; `lo` comes up too. Fails, leaving `link` in the
/// host, if the namespace already has an interface of that name (the spec's ADD rule).
pub async fn move_in(host: &Netlink, link: &str, netns: &Path, want: &NsInterface) -> Result<()> {
    let ifname = want.ifname.clone();
    let taken = inside(
        netns,
        Box::new(move |nl: Netlink| Box::pin(async move { Ok(nl.link(&ifname).await?.is_some()) })),
    )
    .await?;
    if taken {
        return Err(HostError::Invalid(format!(
            "interface {} already exists in {}",
            want.ifname,
            netns.display()
        )));
    }
    // `plug` makes it in the namespace already where it can: then there is no move.
    if host.link(link).await?.is_some() {
        let file = open(netns)?;
        host.move_to_netns(link, file.as_raw_fd()).await?;
    }
    let (link, want) = (link.to_string(), want.clone());
    inside(
        netns,
        Box::new(move |nl: Netlink| {
            Box::pin(async move {
                nl.rename(&link, &want.ifname).await?;
                nl.configure(&want.ifname, Some(&want.mac), want.mtu, true)
                    .await?;
                for a in &want.addrs {
                    nl.add_address(&want.ifname, *a).await?;
                }
                nl.configure("lo", None, None, true).await?;
                for (dst, gw) in &want.routes {
                    nl.add_route(&want.ifname, *dst, *gw).await?;
                }
                Ok(())
            })
        }),
    )
    .await
}

/// The interface `ifname` in the namespace, if there is one.
pub async fn inspect(netns: &Path, ifname: &str) -> Result<Option<NsLink>> {
    let ifname = ifname.to_string();
    inside(
        netns,
        Box::new(move |nl: Netlink| {
            Box::pin(async move {
                let Some(l) = nl.link(&ifname).await? else {
                    return Ok(None);
                };
                Ok(Some(NsLink {
                    mac: l.mac,
                    mtu: l.mtu,
                    addrs: nl.addresses(&ifname).await?,
                }))
            })
        }),
    )
    .await
}

/// Deletes `ifname` in the namespace; true if it was there. A namespace that is gone
/// (the container stopped) has nothing left to delete.
pub async fn delete(netns: &Path, ifname: &str) -> Result<bool> {
    if !netns.exists() {
        return Ok(false);
    }
    let ifname = ifname.to_string();
    inside(
        netns,
        Box::new(move |nl: Netlink| Box::pin(async move { nl.delete(&ifname).await })),
    )
    .await
}
