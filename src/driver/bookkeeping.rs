//! An endpoint's bookkeeping (its name, device_id and tags on the port), written after
//! CreateEndpoint's answer (which Docker serialises per network) and before Join's, and
//! retried.

use std::sync::Arc;
use std::time::Duration;

use crate::neutron::{Neutron, Port, PortBody, PortId, PortWriteFailed};

/// An endpoint's bookkeeping waiting to be written on its port.
pub(super) struct Bookkeeping {
    pub(super) background: Arc<super::background::Background>,
    pub(super) neutron: Neutron,
    pub(super) unwritten: Arc<std::sync::Mutex<std::collections::HashMap<PortId, Port>>>,
    pub(super) before: Port,
    pub(super) body: PortBody,
    pub(super) tags: Vec<String>,
    /// Nothing of it has reached the port yet.
    pub(super) as_made: bool,
}

/// A bookkeeping Neutron did not take (down, restarting) is tried again, each wait twice
/// the last, up to this; DeleteEndpoint cancels a retry still waiting.
const BOOKKEEPING_RETRY_MAX: Duration = Duration::from_secs(60);

impl Bookkeeping {
    pub(super) fn schedule(mut self, delay: Duration) {
        let id = self.before.id.clone();
        // A port given back while marked unwritten is not scrubbed: marked only while
        // nothing of the bookkeeping has reached it.
        if self.as_made {
            if let Ok(mut m) = self.unwritten.lock() {
                m.insert(id.clone(), self.before.clone());
            }
        }
        let background = self.background.clone();
        background.spawn_after(&id.clone(), delay, async move {
            if let Ok(mut m) = self.unwritten.lock() {
                m.remove(&id);
            }
            crate::kill_point!("CreateEndpoint.bookkeeping");
            let written = self
                .neutron
                .update_port_then_tags(&id, self.body.clone(), Some(&self.tags))
                .await;
            let Err(PortWriteFailed { error, updated }) = written else {
                return;
            };
            if error.is_not_found() {
                return;
            }
            let next = (delay * 2).min(BOOKKEEPING_RETRY_MAX);
            tracing::warn!(port = %id, %error, retry_in_s = next.as_secs(), "endpoint bookkeeping on the port failed; trying again");
            self.as_made &= !updated;
            self.schedule(next);
        });
    }
}
