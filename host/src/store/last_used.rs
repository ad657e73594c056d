//! Throttling of `last_used_at` writes. A key or grant used a thousand times a second must
//! not cost a thousand database writes a second for an informational column: the first use
//! in each [`RESOLUTION`] window is written, the rest are skipped. So `last_used_at` is
//! accurate to within [`RESOLUTION`] on each host instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How stale a `last_used_at` may be.
pub const RESOLUTION: Duration = Duration::from_mins(1);

/// Remembers when each id's use was last written. Cheap to clone; clones share.
#[derive(Debug, Clone, Default)]
pub struct LastUsed {
    written: Arc<Mutex<HashMap<String, Instant>>>,
}

impl LastUsed {
    /// Whether a use of `id` now should be written (and, if so, notes that it will be).
    pub fn due(&self, id: &str) -> bool {
        let now = Instant::now();
        let Ok(mut written) = self.written.lock() else {
            return true;
        };
        if written.len() > 100_000 {
            written.retain(|_, at| now.duration_since(*at) < RESOLUTION);
        }
        match written.get(id) {
            Some(at) if now.duration_since(*at) < RESOLUTION => false,
            _ => {
                written.insert(id.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_use_in_a_window_is_due() {
        let t = LastUsed::default();
        assert!(t.due("a"));
        assert!(!t.due("a"));
        assert!(t.clone().due("b"));
        assert!(!t.due("b"), "clones share their memory");
    }
}
