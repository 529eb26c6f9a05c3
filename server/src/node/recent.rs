//! The latest events a node applied, in memory, so that replication's hot path (what to send,
//! does the replica's history match) needs no Redis read. Older events come from the Redis log.

use crate::event::Event;
use crate::limits::RECENT_EVENTS_MAX;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A bounded window of consecutive events, newest last.
#[derive(Debug, Default)]
pub struct RecentEvents {
    window: Mutex<VecDeque<Event>>,
}

impl RecentEvents {
    /// Appends events just applied (in clock order); a break in the sequence restarts the window.
    pub fn push(&self, events: impl IntoIterator<Item = Event>) {
        let mut window = self.window.lock().expect("recent events lock poisoned");
        for event in events {
            if window
                .back()
                .is_some_and(|last| last.clock + 1 != event.clock)
            {
                window.clear();
            }
            window.push_back(event);
            if window.len() > RECENT_EVENTS_MAX {
                window.pop_front();
            }
        }
    }

    /// Forgets everything (the node's history was replaced by a snapshot).
    pub fn clear(&self) {
        self.window
            .lock()
            .expect("recent events lock poisoned")
            .clear();
    }

    /// The clock of the oldest event in the window (none if it is empty).
    pub fn oldest(&self) -> Option<u64> {
        let window = self.window.lock().expect("recent events lock poisoned");
        Some(window.front()?.clock)
    }

    /// The event with this clock, if it is in the window.
    pub fn get(&self, clock: u64) -> Option<Event> {
        let window = self.window.lock().expect("recent events lock poisoned");
        let first = window.front()?.clock;
        window.get(clock.checked_sub(first)? as usize).cloned()
    }

    /// Up to `max` events from clock `from` on, if the window holds `from`.
    pub fn from(&self, from: u64, max: usize) -> Option<Vec<Event>> {
        let window = self.window.lock().expect("recent events lock poisoned");
        let first = window.front()?.clock;
        let start = from.checked_sub(first)? as usize;
        if start >= window.len() {
            return None;
        }
        Some(window.range(start..).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Change;
    use uuid::Uuid;

    fn event(clock: u64) -> Event {
        Event {
            clock,
            epoch: 1,
            origin_rank: 1,
            request_id: Uuid::from_u128(clock as u128),
            at_ms: 0,
            change: Change::Delete {
                uuid: Uuid::nil(),
                login: "x".into(),
            },
        }
    }

    #[test]
    fn window_serves_consecutive_ranges_and_restarts_on_a_break() {
        let recent = RecentEvents::default();
        recent.push((1..=5).map(event));
        assert_eq!(recent.get(3).unwrap().clock, 3);
        assert!(recent.get(6).is_none());
        let clocks: Vec<u64> = recent.from(2, 2).unwrap().iter().map(|e| e.clock).collect();
        assert_eq!(clocks, vec![2, 3]);
        assert!(recent.from(6, 10).is_none());
        recent.push([event(9)]);
        assert!(recent.get(5).is_none(), "a gap restarts the window");
        assert_eq!(recent.from(9, 10).unwrap().len(), 1);
    }
}
