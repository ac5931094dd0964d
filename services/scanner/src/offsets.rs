//! Which offsets of each assigned partition may be committed: only the contiguous prefix of
//! finished commands. Commands finish out of order (scans run concurrently); a command that is
//! still running, or was handed over, holds the commit point of its partition below itself.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct Partition {
    /// Bumped on each assignment, so work begun under an earlier assignment is recognised.
    generation: u64,
    /// Read and not finished.
    open: BTreeSet<i64>,
    /// The offset after the highest one read.
    next: Option<i64>,
    /// The last offset committed (the next offset to read).
    committed: Option<i64>,
}

#[derive(Debug, Default)]
pub struct OffsetBook {
    partitions: HashMap<i32, Partition>,
    generations: u64,
}

impl OffsetBook {
    /// Starts tracking a newly assigned partition; returns its generation.
    pub fn assign(&mut self, partition: i32) -> u64 {
        self.generations += 1;
        self.partitions.insert(
            partition,
            Partition {
                generation: self.generations,
                ..Partition::default()
            },
        );
        self.generations
    }

    /// Stops tracking a partition; returns the offset to commit for it, if it moved.
    pub fn revoke(&mut self, partition: i32) -> Option<i64> {
        let point = self.commit_point(partition);
        self.partitions.remove(&partition);
        point
    }

    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|p| p.generation)
    }

    /// Records that `offset` was read; false when the partition is not assigned here.
    pub fn read(&mut self, partition: i32, offset: i64) -> bool {
        let Some(p) = self.partitions.get_mut(&partition) else {
            return false;
        };
        p.open.insert(offset);
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        true
    }

    /// Records that `offset`, read under `generation`, finished.
    pub fn finish(&mut self, partition: i32, offset: i64, generation: u64) {
        if let Some(p) = self.partitions.get_mut(&partition)
            && p.generation == generation
        {
            p.open.remove(&offset);
        }
    }

    /// The offset to commit for `partition` when it moved since the last commit: the lowest
    /// open offset, or the next offset to read when nothing is open.
    fn commit_point(&self, partition: i32) -> Option<i64> {
        let p = self.partitions.get(&partition)?;
        let point = p.open.first().copied().or(p.next)?;
        (p.committed != Some(point)).then_some(point)
    }

    /// Every partition's new commit point; marks them committed.
    pub fn take_commits(&mut self) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            if let Some(point) = self.commit_point(partition) {
                out.push((partition, point));
                if let Some(p) = self.partitions.get_mut(&partition) {
                    p.committed = Some(point);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Forgets that commits were made, so the next `take_commits` repeats them (after a failed
    /// commit).
    pub fn uncommit(&mut self, partition: i32) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            p.committed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_stop_below_the_lowest_unfinished_offset() {
        let mut book = OffsetBook::default();
        let g = book.assign(0);
        for offset in 10..15 {
            assert!(book.read(0, offset));
        }
        book.finish(0, 10, g);
        book.finish(0, 12, g);
        assert_eq!(book.take_commits(), vec![(0, 11)]);
        assert_eq!(book.take_commits(), vec![], "no new point, no commit");
        book.finish(0, 11, g);
        book.finish(0, 13, g);
        book.finish(0, 14, g);
        assert_eq!(book.take_commits(), vec![(0, 15)]);
    }

    #[test]
    fn work_of_an_earlier_assignment_never_moves_a_new_one() {
        let mut book = OffsetBook::default();
        let old = book.assign(3);
        book.read(3, 5);
        assert_eq!(book.revoke(3), Some(5));
        assert!(!book.read(3, 6), "revoked partitions take no reads");
        let new = book.assign(3);
        book.read(3, 5);
        book.finish(3, 5, old);
        assert_eq!(book.take_commits(), vec![(3, 5)]);
        book.finish(3, 5, new);
        assert_eq!(book.take_commits(), vec![(3, 6)]);
    }

    proptest! {
        /// Whatever order commands finish in, the commit point is the first unfinished offset.
        #[test]
        fn the_commit_point_is_the_first_unfinished_offset(order in Just((0..40i64).collect::<Vec<_>>()).prop_shuffle(), finished in 0usize..40) {
            let mut book = OffsetBook::default();
            let g = book.assign(1);
            for offset in 0..40 {
                book.read(1, offset);
            }
            for offset in &order[..finished] {
                book.finish(1, *offset, g);
            }
            let done: BTreeSet<i64> = order[..finished].iter().copied().collect();
            let expected = (0..40).find(|o| !done.contains(o)).unwrap_or(40);
            prop_assert_eq!(book.take_commits(), vec![(1, expected)]);
        }
    }
}
