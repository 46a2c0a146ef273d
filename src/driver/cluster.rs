//! The driver's side of `[cluster]`: one task that carries the core's claims
//! and releases to the registry ([`crate::cluster`]) in the order the core
//! made them (a release and the next claim of the same room must not pass each
//! other), renews this node's leases on each heartbeat, and brings back the
//! registry's answers and the rooms of nodes found dead.

use tokio::sync::mpsc;

use crate::cluster::Registry;
use crate::core::cluster::Claim;

/// What the driver asks of the registry task.
pub(super) enum Ask {
    /// claim a room before its first call
    Claim(String),
    /// name a satellite node for a room over `cascade_at`
    Cascade(String),
    /// a held room ended
    Release(String),
    /// renew this node and these held rooms; look for dead nodes
    Beat(Vec<String>),
    /// this node stops: its node key goes
    Leave,
    /// tell the other nodes of a PIN try or call attempt
    Publish(crate::core::cluster::GuardNote),
    /// note (Some) or forget (None) a recording or dial-out running here
    Work(String, Option<String>),
}

/// What the registry task reports.
pub(super) enum Told {
    /// the answer to a claim
    Claimed(String, Claim),
    /// a dead node held this room, and what ran there
    Lost(crate::core::cluster::Lost),
    /// the satellite for a room (`host:port`), or none to be had
    Satellite(String, Option<String>),
    /// another node's PIN try or call attempt
    Guard(crate::core::cluster::GuardNote),
}

/// Start the task; it ends when the sender is dropped.
pub(super) fn start(
    reg: Registry,
    told: mpsc::UnboundedSender<Told>,
) -> mpsc::UnboundedSender<Ask> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Ask>();
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let listener = reg.clone();
    tokio::spawn(async move { listener.listen(notes_tx).await });
    let guard_told = told.clone();
    tokio::spawn(async move {
        while let Some(n) = notes.recv().await {
            if guard_told.send(Told::Guard(n)).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(ask) = rx.recv().await {
            match ask {
                Ask::Claim(room) => {
                    let c = reg.claim(&room).await;
                    let _ = told.send(Told::Claimed(room, c));
                }
                Ask::Release(room) => reg.release(&room).await,
                Ask::Cascade(room) => {
                    let sat = reg.satellite(&room).await;
                    let _ = told.send(Told::Satellite(room, sat));
                }
                Ask::Beat(rooms) => match reg.heartbeat(&rooms).await {
                    Ok(lost) => {
                        for l in lost {
                            let _ = told.send(Told::Lost(l));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cluster heartbeat failed"),
                },
                Ask::Leave => reg.leave().await,
                Ask::Publish(note) => reg.publish(note).await,
                Ask::Work(key, value) => reg.work(&key, value.as_deref()).await,
            }
        }
    });
    tx
}
