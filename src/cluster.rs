//! The cluster's room registry in Redis (`[cluster]`), shared by the nodes
//! behind Kamailio. Keys:
//!
//! - `caucus:room:{R}` = the `node_id` holding room R, with a lease (`PX`):
//!   claimed with `SET NX` by the first node that admits a call of R, renewed
//!   while R lives there, deleted when it ends, and lapsing when its node dies;
//! - `caucus:node:{id}` = `{sip_uri, api_url}` of a live node, with the same
//!   lease, renewed every third of it;
//! - `caucus:nodes` = every node that has run; `caucus:rooms:{id}` = the rooms
//!   node `id` holds, so that the first live node to see a dead one (its node
//!   key lapsed) reports its rooms as lost, once.
//!
//! - `caucus:work:{id}` = what node `id` runs that outlives a call's signalling
//!   (`rec:ID` and `dial:LEG` → room), reported failed with its rooms;
//! - channel `caucus:guard`: each node's PIN tries and call attempts
//!   ([`GuardNote`]), counted by every other node in its lockouts and bans.
//!
//! Only a node's own key is ever renewed or deleted: renewal and release are
//! compare-and-set scripts, so a node that lost a lease (a partition) cannot
//! take the room back from its new holder. No consensus beyond `SET NX` is
//! needed: the registry decides who holds a room, Kamailio only routes.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::core::cluster::{Claim, GuardNote, Lost};

/// A node as the others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    /// its `node_id`
    pub id: String,
    /// where its callers go (`sip:host:port`)
    pub sip_uri: String,
    /// where its API is (`http://host:port`)
    pub api_url: String,
}

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
#[error("room registry: {0}")]
pub struct RegistryError(#[from] redis::RedisError);

/// A handle on the registry (cheap to clone: one multiplexed connection).
#[derive(Clone)]
pub struct Registry {
    client: redis::Client,
    conn: ConnectionManager,
    /// this node
    pub me: Node,
    lease: Duration,
}

fn room_key(room: &str) -> String {
    format!("caucus:room:{room}")
}

fn node_key(id: &str) -> String {
    format!("caucus:node:{id}")
}

fn rooms_of(id: &str) -> String {
    format!("caucus:rooms:{id}")
}

fn work_of(id: &str) -> String {
    format!("caucus:work:{id}")
}

const NODES: &str = "caucus:nodes";
const GUARD: &str = "caucus:guard";

/// A note on the guard channel: who tells it, and what.
#[derive(Serialize, Deserialize)]
struct Told {
    from: String,
    note: GuardNote,
}

/// Renew KEYS[1] for ARGV[2] ms if it still names ARGV[1].
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Delete KEYS[1] if it still names ARGV[1].
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

impl Registry {
    /// A registry at `url` for node `me`; connects on first use, and again
    /// after a failure (each request waits at most a second).
    pub fn new(url: &str, me: Node, lease: Duration) -> Result<Registry, RegistryError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Registry {
            client,
            conn,
            me,
            lease,
        })
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    /// Claim `room` for this node: held here, or where it is held.
    pub async fn claim(&self, room: &str) -> Claim {
        match self.try_claim(room).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%room, error = %e, "cannot claim the room");
                Claim::Unreachable
            }
        }
    }

    async fn try_claim(&self, room: &str) -> Result<Claim, RegistryError> {
        let mut c = self.conn.clone();
        // twice: once more if the holder turns out dead and its lease is cleared
        for _ in 0..2 {
            let set: Option<String> = redis::cmd("SET")
                .arg(room_key(room))
                .arg(&self.me.id)
                .arg("NX")
                .arg("PX")
                .arg(self.lease_ms())
                .query_async(&mut c)
                .await?;
            if set.is_some() {
                let _: () = c.sadd(rooms_of(&self.me.id), room).await?;
                return Ok(Claim::Held);
            }
            let Some(holder): Option<String> = c.get(room_key(room)).await? else {
                continue; // released meanwhile
            };
            if holder == self.me.id {
                return Ok(Claim::Held);
            }
            match self.node(&holder).await? {
                Some(n) => return Ok(Claim::Elsewhere(n.sip_uri)),
                None => {
                    // its node is dead and its room lease not lapsed yet: the
                    // room is free now (its calls went with the node)
                    let _: i64 = redis::Script::new(RELEASE)
                        .key(room_key(room))
                        .arg(&holder)
                        .invoke_async(&mut c)
                        .await?;
                }
            }
        }
        Ok(Claim::Unreachable)
    }

    /// Give `room` back (it ended here).
    pub async fn release(&self, room: &str) {
        let mut c = self.conn.clone();
        let r: Result<(), redis::RedisError> = async {
            let _: i64 = redis::Script::new(RELEASE)
                .key(room_key(room))
                .arg(&self.me.id)
                .invoke_async(&mut c)
                .await?;
            let _: () = c.srem(rooms_of(&self.me.id), room).await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(%room, error = %e, "cannot release the room (its lease will lapse)");
        }
    }

    /// The node holding `room`, if another live one does.
    pub async fn holder(&self, room: &str) -> Result<Option<Node>, RegistryError> {
        let mut c = self.conn.clone();
        let Some(id): Option<String> = c.get(room_key(room)).await? else {
            return Ok(None);
        };
        if id == self.me.id {
            return Ok(None);
        }
        self.node(&id).await
    }

    /// A live node by id.
    pub async fn node(&self, id: &str) -> Result<Option<Node>, RegistryError> {
        let mut c = self.conn.clone();
        let v: Option<String> = c.get(node_key(id)).await?;
        Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// A live node to take a room's callers beyond `cascade_at` (`host:port`
    /// of its SIP address): another node, chosen by the room's name so that
    /// big rooms spread over the nodes.
    pub async fn satellite(&self, room: &str) -> Option<String> {
        let mut others = self.others().await.ok()?;
        if others.is_empty() {
            return None;
        }
        others.sort_by(|a, b| a.id.cmp(&b.id));
        let pick = room.bytes().map(usize::from).sum::<usize>() % others.len();
        let uri = &others[pick].sip_uri;
        let rest = uri.strip_prefix("sip:").unwrap_or(uri);
        Some(rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string())
    }

    /// Every live node but this one.
    pub async fn others(&self) -> Result<Vec<Node>, RegistryError> {
        let mut c = self.conn.clone();
        let ids: Vec<String> = c.smembers(NODES).await?;
        let mut out = Vec::new();
        for id in ids.into_iter().filter(|i| *i != self.me.id) {
            if let Some(n) = self.node(&id).await? {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Something this node runs (a recording `rec:ID`, a dial-out `dial:LEG`)
    /// in `value` (`ROOM` or `ROOM TARGET`), reported failed if the node dies.
    pub async fn work(&self, key: &str, value: Option<&str>) {
        let mut c = self.conn.clone();
        let r: Result<i64, _> = match value {
            Some(v) => c.hset(work_of(&self.me.id), key, v).await,
            None => c.hdel(work_of(&self.me.id), key).await,
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "work not noted in the registry");
        }
    }

    /// This node is alive (its key renewed) and still holds `rooms` (each
    /// lease renewed; one another node took is reported). Returns the rooms
    /// of dead nodes this node was the first to see, with what ran there.
    pub async fn heartbeat(&self, rooms: &[String]) -> Result<Vec<Lost>, RegistryError> {
        let mut c = self.conn.clone();
        let me = serde_json::to_string(&self.me).unwrap_or_default();
        let _: () = redis::cmd("SET")
            .arg(node_key(&self.me.id))
            .arg(me)
            .arg("PX")
            .arg(self.lease_ms())
            .query_async(&mut c)
            .await?;
        let _: () = c.sadd(NODES, &self.me.id).await?;
        for room in rooms {
            let kept: i64 = redis::Script::new(RENEW)
                .key(room_key(room))
                .arg(&self.me.id)
                .arg(self.lease_ms())
                .invoke_async(&mut c)
                .await?;
            if kept == 0 {
                tracing::error!(%room, "this node's lease on the room lapsed (another node may hold it now)");
            }
        }
        let mut lost = Vec::new();
        let ids: Vec<String> = c.smembers(NODES).await?;
        for id in ids.into_iter().filter(|i| *i != self.me.id) {
            let alive: bool = c.exists(node_key(&id)).await?;
            if alive {
                continue;
            }
            // whoever removes it reports it: one report per death
            let removed: i64 = c.srem(NODES, &id).await?;
            if removed == 1 {
                let rooms: Vec<String> = c.smembers(rooms_of(&id)).await?;
                let work: Vec<(String, String)> = c.hgetall(work_of(&id)).await?;
                let _: () = c.del(&[rooms_of(&id), work_of(&id)]).await?;
                lost.extend(lost_rooms(&id, rooms, work));
            }
        }
        Ok(lost)
    }

    /// This node is stopping: its key goes at once (so its rooms are free to
    /// others as soon as they end here).
    pub async fn leave(&self) {
        let mut c = self.conn.clone();
        let _: Result<(), _> = c.del(node_key(&self.me.id)).await;
        let _: Result<i64, _> = c.srem(NODES, &self.me.id).await;
    }

    /// Tell the other nodes of a PIN try or call attempt (lost if Redis is
    /// down: each node then counts what it sees itself).
    pub async fn publish(&self, note: GuardNote) {
        let Ok(body) = serde_json::to_string(&Told {
            from: self.me.id.clone(),
            note,
        }) else {
            return;
        };
        let mut c = self.conn.clone();
        let sent: Result<i64, _> = c.publish(GUARD, body).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "guard note not published");
        }
    }

    /// The other nodes' notes, for as long as `out` is open (resubscribing
    /// after a lost connection).
    pub async fn listen(&self, out: tokio::sync::mpsc::UnboundedSender<GuardNote>) {
        use futures_util::StreamExt;
        while !out.is_closed() {
            match self.client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if ps.subscribe(GUARD).await.is_ok() {
                        let mut msgs = ps.on_message();
                        while let Some(m) = msgs.next().await {
                            let Ok(t) = serde_json::from_slice::<Told>(m.get_payload_bytes())
                            else {
                                continue;
                            };
                            if t.from != self.me.id && out.send(t.note).is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "guard channel unreachable"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// How often the heartbeat runs.
    pub fn beat(&self) -> Duration {
        self.lease / 3
    }
}

/// A dead node's rooms with their recordings and dial-outs.
fn lost_rooms(node: &str, rooms: Vec<String>, work: Vec<(String, String)>) -> Vec<Lost> {
    let mut out: Vec<Lost> = rooms
        .into_iter()
        .map(|room| Lost {
            room,
            node: node.to_string(),
            ..Lost::default()
        })
        .collect();
    for (key, value) in work {
        let (room, to) = value.split_once(' ').unwrap_or((value.as_str(), ""));
        let i = match out.iter().position(|l| l.room == room) {
            Some(i) => i,
            None => {
                out.push(Lost {
                    room: room.to_string(),
                    node: node.to_string(),
                    ..Lost::default()
                });
                out.len() - 1
            }
        };
        if let Some(id) = key.strip_prefix("rec:") {
            out[i].recordings.push(id.to_string());
        } else if let Some(leg) = key.strip_prefix("dial:").and_then(|l| l.parse().ok()) {
            out[i].dialouts.push((leg, to.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_nodes_work_goes_with_its_rooms() {
        let lost = lost_rooms(
            "n2",
            vec!["a".into(), "b".into()],
            vec![
                ("rec:00ff".into(), "a".into()),
                ("dial:7".into(), "b sip:x@192.0.2.1".into()),
                ("rec:0aaa".into(), "c".into()),
            ],
        );
        assert_eq!(lost.len(), 3);
        assert_eq!(lost[0].recordings, vec!["00ff".to_string()]);
        assert_eq!(lost[1].dialouts, vec![(7, "sip:x@192.0.2.1".to_string())]);
        assert_eq!((lost[2].room.as_str(), lost[2].node.as_str()), ("c", "n2"));
    }
}
