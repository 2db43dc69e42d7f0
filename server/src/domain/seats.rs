//! Seat-map rules: seat states, the venue layout an event is sold on,
//! choosing the best seats, checking hold requests, and a versioned replica
//! of an event's seat states that applies diffs in order and notices gaps.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::event::Seat;

/// Seat states and changes are the contract's own (free, held, sold, and
/// their one-letter codes).
pub use qt_protocol::frames::{SeatChange, SeatStatus};

/// A row of seats in number order, for adjacency.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: String,
    pub label: String,
    /// Seat indexes into the layout, ordered by seat number.
    pub seats: Vec<usize>,
    /// Distance rank from the stage: 0 is the front row of the venue.
    pub rank: usize,
}

/// The seats an event sells, in map order, with lookups.
#[derive(Debug, Clone)]
pub struct SeatLayout {
    pub seats: Vec<Seat>,
    index: HashMap<String, usize>,
    pub rows: Vec<Row>,
    /// Twice the x of the venue's middle line (kept whole).
    centre_x2: i64,
}

impl SeatLayout {
    /// Builds the layout. The stage is at the top of the map: rows with a
    /// smaller `y` are nearer.
    pub fn new(mut seats: Vec<Seat>) -> Self {
        seats.sort_by(|a, b| (&a.section, a.y, a.number, &a.id).cmp(&(&b.section, b.y, b.number, &b.id)));
        let index = seats.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        let mut by_row: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, s) in seats.iter().enumerate() {
            by_row.entry((&s.section, &s.row)).or_default().push(i);
        }
        let mut rows: Vec<Row> = by_row
            .into_iter()
            .map(|((section, label), mut idx)| {
                idx.sort_by_key(|&i| (seats[i].number, seats[i].x));
                Row { section: section.to_owned(), label: label.to_owned(), seats: idx, rank: 0 }
            })
            .collect();
        let y = |r: &Row| r.seats.iter().map(|&i| seats[i].y).min().unwrap_or(0);
        rows.sort_by(|a, b| (y(a), &a.section, &a.label).cmp(&(y(b), &b.section, &b.label)));
        let mut rank = 0;
        let mut last_y = None;
        for row in &mut rows {
            let row_y = y(row);
            if last_y.is_some_and(|l| l != row_y) {
                rank += 1;
            }
            last_y = Some(row_y);
            row.rank = rank;
        }
        let (min_x, max_x) = seats.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s.x), hi.max(s.x)));
        let centre_x2 = if seats.is_empty() { 0 } else { min_x + max_x };
        Self { seats, index, rows, centre_x2 }
    }

    pub fn len(&self) -> usize {
        self.seats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seats.is_empty()
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Whether two seats next to each other in a row's number order are
    /// really side by side (no aisle or gap between them).
    fn adjacent(&self, a: usize, b: usize) -> bool {
        let (sa, sb) = (&self.seats[a], &self.seats[b]);
        sb.number == sa.number + 1
    }
}

/// Why a hold request is refused before the store is asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HoldRequestError {
    #[error("name at least one seat")]
    Empty,
    #[error("seat {0} appears twice")]
    Duplicate(String),
    #[error("no such seats at this event: {}", .0.join(", "))]
    Unknown(Vec<String>),
    #[error("at most {0} seats per buyer")]
    TooMany(u32),
    #[error("count must be between 1 and {0}")]
    BadCount(u32),
}

/// Checks a list of seat ids: non-empty, no duplicates, all of this event,
/// no more than a buyer may hold at all.
pub fn check_seat_ids(layout: &SeatLayout, ids: &[String], max_per_buyer: u32) -> Result<Vec<usize>, HoldRequestError> {
    if ids.is_empty() {
        return Err(HoldRequestError::Empty);
    }
    if ids.len() > max_per_buyer as usize {
        return Err(HoldRequestError::TooMany(max_per_buyer));
    }
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            return Err(HoldRequestError::Duplicate(id.chars().take(64).collect()));
        }
    }
    let unknown: Vec<String> =
        ids.iter().filter(|id| layout.index_of(id).is_none()).map(|id| id.chars().take(64).collect()).collect();
    if !unknown.is_empty() {
        return Err(HoldRequestError::Unknown(unknown));
    }
    Ok(ids.iter().filter_map(|id| layout.index_of(id)).collect())
}

/// What `hold_best` may pick from.
#[derive(Debug, Clone, Copy, Default)]
pub struct BestFilter<'a> {
    pub tier: Option<&'a str>,
    pub section: Option<&'a str>,
}

/// Picks `count` free seats: adjacent in one row, nearest the stage, nearest
/// the venue's middle line; when no row has such a run, the fewest separate
/// runs, largest first, nearest the stage, each as central as it can be. `None` when fewer than `count`
/// seats are free under the filter.
pub fn best_seats(
    layout: &SeatLayout,
    status: impl Fn(usize) -> SeatStatus,
    count: usize,
    filter: BestFilter<'_>,
) -> Option<Vec<usize>> {
    if count == 0 {
        return None;
    }
    let eligible = |i: usize| {
        let s = &layout.seats[i];
        status(i) == SeatStatus::Free
            && filter.tier.is_none_or(|t| s.tier == t)
            && filter.section.is_none_or(|sec| s.section == sec)
    };
    // Maximal runs of adjacent eligible seats, per row: (row, start, len).
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for (r, row) in layout.rows.iter().enumerate() {
        let mut start = None;
        for p in 0..=row.seats.len() {
            let continues = p < row.seats.len()
                && eligible(row.seats[p])
                && (start.is_none() || layout.adjacent(row.seats[p - 1], row.seats[p]));
            match (start, continues) {
                (None, true) => start = Some(p),
                (Some(s), false) => {
                    runs.push((r, s, p - s));
                    start = (p < row.seats.len() && eligible(row.seats[p])).then_some(p);
                }
                _ => {}
            }
        }
    }
    let total: usize = runs.iter().map(|r| r.2).sum();
    if total < count {
        return None;
    }
    // How far the middle of `len` seats from `start` in row `r` is from the
    // venue's middle line (doubled, times `len`, to stay in integers).
    let off_centre = |r: usize, start: usize, len: usize| -> i64 {
        let sum: i64 = layout.rows[r].seats[start..start + len].iter().map(|&i| layout.seats[i].x).sum();
        (2 * sum - layout.centre_x2 * len as i64).abs() / len as i64
    };
    // The most central window of `want` seats inside a run.
    let central = |r: usize, s: usize, len: usize, want: usize| -> (i64, usize) {
        (s..=s + len - want).map(|start| (off_centre(r, start, want), start)).min().unwrap_or((0, s))
    };
    let best_single = runs
        .iter()
        .filter(|&&(_, _, len)| len >= count)
        .map(|&(r, s, len)| {
            let (distance, start) = central(r, s, len, count);
            (layout.rows[r].rank, distance, r, start)
        })
        .min();
    if let Some((_, _, r, start)) = best_single {
        return Some(layout.rows[r].seats[start..start + count].to_vec());
    }
    runs.sort_by_key(|&(r, s, len)| (std::cmp::Reverse(len), layout.rows[r].rank, off_centre(r, s, len)));
    let mut picked = Vec::with_capacity(count);
    for (r, s, len) in runs {
        let take = len.min(count - picked.len());
        let (_, start) = central(r, s, len, take);
        picked.extend_from_slice(&layout.rows[r].seats[start..start + take]);
        if picked.len() == count {
            break;
        }
    }
    Some(picked)
}

/// What applying a diff to a replica did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// In order: applied; the replica is now at the diff's version.
    Applied,
    /// Already seen (at-least-once delivery): ignored.
    Duplicate,
    /// Changes were missed between the replica and this diff: resync.
    Gap,
}

/// An event's seat states at a version. Versions rise by exactly the number
/// of changes, so a diff fits when `version - changes == self.version`.
#[derive(Debug, Clone)]
pub struct Replica {
    pub version: u64,
    pub status: Vec<SeatStatus>,
}

impl Replica {
    pub fn apply(&mut self, layout: &SeatLayout, version: u64, changes: &[SeatChange]) -> Applied {
        let n = changes.len() as u64;
        if version <= self.version {
            return Applied::Duplicate;
        }
        if version.checked_sub(n) != Some(self.version) {
            return Applied::Gap;
        }
        for c in changes {
            if let Some(i) = layout.index_of(&c.id) {
                self.status[i] = c.status;
            }
        }
        self.version = version;
        Applied::Applied
    }
}

/// Row 1 of section A in tier `t`: seats of these numbers, 10 apart.
#[cfg(test)]
pub(crate) fn one_row(numbers: impl IntoIterator<Item = i64>) -> SeatLayout {
    let seats = numbers
        .into_iter()
        .map(|n| Seat {
            id: format!("A-1-{n}"),
            section: "A".into(),
            row: "1".into(),
            number: n,
            x: n * 10,
            y: 0,
            tier: "t".into(),
        })
        .collect();
    SeatLayout::new(seats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small hall: 2 sections × 3 rows × 6 seats; row 1 at the front.
    fn hall() -> SeatLayout {
        let mut seats = Vec::new();
        for (s, section) in ["L", "R"].iter().enumerate() {
            for row in 1..=3 {
                for n in 1..=6 {
                    seats.push(Seat {
                        id: format!("{section}-{row}-{n}"),
                        section: (*section).into(),
                        row: row.to_string(),
                        number: n,
                        x: s as i64 * 100 + n * 10,
                        y: row * 10,
                        tier: if row == 1 { "vip" } else { "std" }.into(),
                    });
                }
            }
        }
        SeatLayout::new(seats)
    }

    fn ids(layout: &SeatLayout, picked: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = picked.iter().map(|&i| layout.seats[i].id.clone()).collect();
        v.sort();
        v
    }

    fn taken(layout: &SeatLayout, taken: &[&str]) -> impl Fn(usize) -> SeatStatus {
        let set: HashSet<usize> = taken.iter().filter_map(|id| layout.index_of(id)).collect();
        move |i| if set.contains(&i) { SeatStatus::Held } else { SeatStatus::Free }
    }

    #[test]
    fn picks_an_adjacent_run_in_the_front_row_nearest_the_middle() {
        let h = hall();
        // The middle line (x 85) runs between the sections: L's inner end
        // and R's inner end are as near; the tie goes to the first row.
        let got = best_seats(&h, |_| SeatStatus::Free, 2, BestFilter::default()).unwrap();
        assert_eq!(ids(&h, &got), vec!["L-1-5", "L-1-6"]);
        let got = best_seats(&h, taken(&h, &["L-1-6"]), 2, BestFilter::default()).unwrap();
        assert_eq!(ids(&h, &got), vec!["R-1-1", "R-1-2"], "the inner end of the other section beats L-1-4,5");
    }

    #[test]
    fn the_demo_hall_seats_best_buyers_in_the_middle_section() {
        let h = SeatLayout::new(crate::domain::demo::seats());
        let got = best_seats(&h, |_| SeatStatus::Free, 3, BestFilter::default()).unwrap();
        assert!(got.iter().all(|&i| h.seats[i].section == "C" && h.seats[i].row == "1"), "{:?}", ids(&h, &got));
    }

    #[test]
    fn skips_rows_without_a_long_enough_run() {
        let h = hall();
        // Front rows of both sections are broken up: no 3 adjacent there.
        let status = taken(&h, &["L-1-3", "L-1-6", "R-1-3", "R-1-6"]);
        let got = best_seats(&h, status, 3, BestFilter::default()).unwrap();
        assert_eq!(ids(&h, &got), vec!["L-2-4", "L-2-5", "L-2-6"]);
        assert!(got.iter().all(|&i| h.seats[i].row == "2"), "second row, adjacent");
        let numbers: Vec<i64> = got.iter().map(|&i| h.seats[i].number).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn respects_tier_and_section() {
        let h = hall();
        let got =
            best_seats(&h, |_| SeatStatus::Free, 2, BestFilter { tier: Some("std"), section: Some("R") }).unwrap();
        assert!(got.iter().all(|&i| h.seats[i].section == "R" && h.seats[i].row == "2"));
        let vip = best_seats(&h, |_| SeatStatus::Free, 12, BestFilter { tier: Some("vip"), section: None }).unwrap();
        assert_eq!(vip.len(), 12);
        assert!(vip.iter().all(|&i| h.seats[i].tier == "vip"));
        assert!(best_seats(&h, |_| SeatStatus::Free, 13, BestFilter { tier: Some("vip"), section: None }).is_none());
        assert!(best_seats(&h, |_| SeatStatus::Free, 1, BestFilter { tier: Some("nope"), section: None }).is_none());
    }

    #[test]
    fn falls_back_to_the_fewest_largest_runs() {
        let h = hall();
        // Only L's front row is eligible (vip, section L), broken into 2+3.
        let status = taken(&h, &["L-1-3"]);
        let filter = BestFilter { tier: Some("vip"), section: Some("L") };
        let got = best_seats(&h, status, 4, filter).unwrap();
        assert_eq!(
            ids(&h, &got),
            vec!["L-1-2", "L-1-4", "L-1-5", "L-1-6"],
            "the run of 3 whole, then the inner 1 of the 2"
        );
        assert!(best_seats(&h, taken(&h, &["L-1-3"]), 6, filter).is_none());
        assert!(best_seats(&h, |_| SeatStatus::Free, 0, filter).is_none());
    }

    #[test]
    fn gaps_in_numbering_are_not_adjacent() {
        // Seats 1, 2, then an aisle, then 10, 11.
        let h = one_row([1, 2, 10, 11]);
        let got = best_seats(&h, taken(&h, &["A-1-1"]), 2, BestFilter::default()).unwrap();
        assert_eq!(ids(&h, &got), vec!["A-1-10", "A-1-11"], "2 and 10 are not side by side");
    }

    #[test]
    fn seat_id_checks() {
        let h = hall();
        let ok = check_seat_ids(&h, &["L-1-1".into(), "R-3-6".into()], 4).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(check_seat_ids(&h, &[], 4), Err(HoldRequestError::Empty));
        assert_eq!(
            check_seat_ids(&h, &["L-1-1".into(), "L-1-1".into()], 4),
            Err(HoldRequestError::Duplicate("L-1-1".into()))
        );
        assert_eq!(
            check_seat_ids(&h, &["X-9-9".into(), "L-1-1".into()], 4),
            Err(HoldRequestError::Unknown(vec!["X-9-9".into()]))
        );
        assert_eq!(check_seat_ids(&h, &vec!["L-1-1".to_string(); 5], 4), Err(HoldRequestError::TooMany(4)));
    }

    #[test]
    fn replica_applies_in_order_skips_duplicates_and_notices_gaps() {
        let h = hall();
        let mut r = Replica { version: 10, status: vec![SeatStatus::Free; h.len()] };
        let held = |id: &str| SeatChange { id: id.into(), status: SeatStatus::Held };
        assert_eq!(r.apply(&h, 12, &[held("L-1-1"), held("L-1-2")]), Applied::Applied);
        assert_eq!(r.version, 12);
        assert_eq!(r.status[h.index_of("L-1-2").unwrap()], SeatStatus::Held);
        assert_eq!(r.apply(&h, 12, &[held("L-1-1"), held("L-1-2")]), Applied::Duplicate);
        assert_eq!(r.apply(&h, 11, &[held("L-1-1")]), Applied::Duplicate);
        assert_eq!(r.apply(&h, 15, &[held("L-1-3")]), Applied::Gap);
        assert_eq!(r.version, 12, "a gap changes nothing");
    }
}
