//! A seller's venue bodies checked into a venue and its seats: every wrong
//! field is named (`seats[12].id`, `csv line 7`), so one 400 answers them
//! all; and the CSV form (`section,row,number,x,y`, an `id` column allowed).

use std::collections::{BTreeSet, HashMap};

use qt_protocol::venues::{NewSeat, NewVenue};

use super::coupons::{FieldErrors, Fields};
use super::event::Seat;

/// Most seats one venue may have.
pub const MAX_SEATS: usize = 100_000;
const MAX_NAME_CHARS: usize = 200;
const MAX_LABEL_CHARS: usize = 32;
const MAX_SEAT_ID: usize = 48;
/// Map coordinates stay within this of the origin.
const MAX_COORD: i64 = 1_000_000;
/// Field errors named per seat before the rest are summed up.
const MAX_NAMED: usize = 20;

/// `[a-z0-9-]{1,64}`, as every id a client may choose.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Letters, digits, `-`, `_` and `.`: no separator any store or log format
/// uses (`|`, `,`, `:`, braces, spaces, quotes).
fn valid_seat_id(id: &str) -> bool {
    (1..=MAX_SEAT_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn label_problem(s: &str) -> Option<&'static str> {
    if s.trim().is_empty() {
        Some("must not be blank")
    } else if s.chars().count() > MAX_LABEL_CHARS {
        Some("must be at most 32 characters")
    } else if s.chars().any(char::is_control) {
        Some("must not hold control characters")
    } else {
        None
    }
}

#[derive(Default)]
struct Errors {
    fields: Fields,
    more: usize,
}

impl Errors {
    fn add(&mut self, field: String, msg: impl Into<String>) {
        if self.fields.len() >= MAX_NAMED && !self.fields.contains_key(&field) {
            self.more += 1;
            return;
        }
        let msg = msg.into();
        self.fields.entry(field).and_modify(|m| *m = format!("{m} and {msg}")).or_insert(msg);
    }

    fn finish<T>(mut self, value: T) -> Result<T, FieldErrors> {
        if self.more > 0 {
            let more = format!("and {} more problems", self.more);
            self.fields.entry("seats".into()).and_modify(|m| *m = format!("{m}; {more}")).or_insert(more);
        }
        if self.fields.is_empty() { Ok(value) } else { Err(FieldErrors(self.fields)) }
    }
}

/// A checked venue: its id, name and seats (in the body's order; no tier:
/// an event gives its seats their tiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedVenue {
    pub id: String,
    pub name: String,
    pub seats: Vec<Seat>,
}

/// Checks a venue body; `generated_id` is its id when the body names none.
pub fn check_venue(body: &NewVenue, generated_id: String) -> Result<CheckedVenue, FieldErrors> {
    let mut errs = Errors::default();
    let id = match &body.id {
        Some(id) if !valid_id(id) => {
            errs.add("id".into(), "must be 1 to 64 of a-z, 0-9 and -");
            id.clone()
        }
        Some(id) => id.clone(),
        None => generated_id,
    };
    let name = body.name.trim();
    if name.is_empty() {
        errs.add("name".into(), "must not be blank");
    } else if name.chars().count() > MAX_NAME_CHARS {
        errs.add("name".into(), "must be at most 200 characters");
    }
    if body.seats.is_empty() {
        errs.add("seats".into(), "must list at least one seat");
    } else if body.seats.len() > MAX_SEATS {
        errs.add("seats".into(), format!("must list at most {MAX_SEATS} seats"));
    }
    let mut seats = Vec::with_capacity(body.seats.len().min(MAX_SEATS));
    let mut first_of: HashMap<String, usize> = HashMap::with_capacity(seats.capacity());
    for (i, s) in body.seats.iter().enumerate().take(MAX_SEATS) {
        if let Some(seat) = check_seat(i, s, &mut errs) {
            if let Some(first) = first_of.get(&seat.id) {
                errs.add(format!("seats[{i}].id"), format!("{:?} is seats[{first}]'s id too", seat.id));
                continue;
            }
            first_of.insert(seat.id.clone(), i);
            seats.push(seat);
        }
    }
    errs.finish(CheckedVenue { id, name: name.to_owned(), seats })
}

fn check_seat(i: usize, s: &NewSeat, errs: &mut Errors) -> Option<Seat> {
    let field = |name: &str| format!("seats[{i}].{name}");
    let mut ok = true;
    for (name, value) in [("section", &s.section), ("row", &s.row)] {
        if let Some(problem) = label_problem(value) {
            errs.add(field(name), problem);
            ok = false;
        }
    }
    if !(0..=1_000_000).contains(&s.number) {
        errs.add(field("number"), "must be from 0 to 1000000");
        ok = false;
    }
    for (name, v) in [("x", s.x), ("y", s.y)] {
        if !(-MAX_COORD..=MAX_COORD).contains(&v) {
            errs.add(field(name), "must be within 1000000 of 0");
            ok = false;
        }
    }
    let id = s.id.clone().unwrap_or_else(|| format!("{}-{}-{}", s.section.trim(), s.row.trim(), s.number));
    if !valid_seat_id(&id) {
        let what = if s.id.is_some() { "" } else { " (made from section-row-number; give an id)" };
        errs.add(field("id"), format!("must be 1 to 48 of letters, digits, -, _ and .{what}"));
        ok = false;
    }
    ok.then(|| Seat {
        id,
        section: s.section.trim().to_owned(),
        row: s.row.trim().to_owned(),
        number: s.number,
        x: s.x,
        y: s.y,
        tier: String::new(),
    })
}

/// A venue's sections, sorted.
pub fn sections(seats: &[Seat]) -> Vec<String> {
    seats.iter().map(|s| s.section.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Checks a CSV upload (see [`read_csv`]) of a venue named `name` into a
/// venue, as [`check_venue`] does a JSON one; a seat's problems are named
/// by its line (`csv line 7`), every problem at once.
pub fn check_csv_venue(
    text: &str,
    id: Option<String>,
    name: String,
    generated_id: String,
) -> Result<CheckedVenue, FieldErrors> {
    let mut errs = Errors::default();
    let rows = read_csv(text, &mut errs);
    let body = NewVenue { id, name, seats: rows.iter().map(|(_, s)| s.clone()).collect() };
    let checked = check_venue(&body, generated_id);
    let Err(FieldErrors(fields)) = &checked else { return errs.finish(()).and(checked) };
    for (field, msg) in fields {
        // `seats[i].what` → the line seat i came from.
        let seat = field.strip_prefix("seats[").and_then(|rest| rest.split_once("].")).and_then(|(i, what)| {
            let line = rows.get(i.parse::<usize>().ok()?)?.0;
            Some((format!("csv line {line}"), format!("{what} {msg}")))
        });
        match seat {
            Some((line, msg)) => errs.add(line, msg),
            None => errs.add(field.clone(), msg.clone()),
        }
    }
    errs.finish(()).and(checked)
}

/// The seats of a CSV upload with their line numbers: a header naming
/// `section,row,number,x,y` in any order (and `id`, optionally), then one
/// seat per line. Quoted cells may hold commas; a byte-order mark is
/// skipped. Errors name the line (`csv line N`).
fn read_csv(text: &str, errs: &mut Errors) -> Vec<(usize, NewSeat)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        errs.add("csv".into(), "is empty: give a header line section,row,number,x,y and one line per seat");
        return Vec::new();
    };
    let names: Vec<String> = split_csv(header).unwrap_or_default().iter().map(|h| h.trim().to_lowercase()).collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let (Some(section), Some(row), Some(number), Some(x), Some(y)) =
        (col("section"), col("row"), col("number"), col("x"), col("y"))
    else {
        errs.add("csv".into(), "the header line must name section, row, number, x and y");
        return Vec::new();
    };
    let id = col("id");
    let mut seats = Vec::new();
    for (n, line) in lines {
        let field = format!("csv line {}", n + 1);
        let Some(cells) = split_csv(line) else {
            errs.add(field, "has an unclosed quote");
            continue;
        };
        if cells.len() != names.len() {
            errs.add(field, format!("has {} cells; the header has {}", cells.len(), names.len()));
            continue;
        }
        let int = |i: usize, what: &str, errs: &mut Errors| match cells[i].trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errs.add(format!("csv line {}", n + 1), format!("{what} must be a whole number"));
                None
            }
        };
        let (Some(number), Some(x), Some(y)) = (int(number, "number", errs), int(x, "x", errs), int(y, "y", errs))
        else {
            continue;
        };
        seats.push((
            n + 1,
            NewSeat {
                id: id.map(|i| cells[i].trim().to_owned()).filter(|s| !s.is_empty()),
                section: cells[section].clone(),
                row: cells[row].clone(),
                number,
                x,
                y,
            },
        ));
        if seats.len() > MAX_SEATS {
            errs.add("csv".into(), format!("must list at most {MAX_SEATS} seats"));
            break;
        }
    }
    seats
}

/// One CSV line's cells (RFC 4180 quoting); `None` for an unclosed quote.
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cell.is_empty() => quoted = true,
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (_, c) => cell.push(c),
        }
    }
    if quoted {
        return None;
    }
    cells.push(cell);
    Some(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(section: &str, row: &str, number: i64) -> NewSeat {
        NewSeat { id: None, section: section.into(), row: row.into(), number, x: number * 10, y: 0 }
    }

    fn venue(seats: Vec<NewSeat>) -> NewVenue {
        NewVenue { id: Some("hall".into()), name: "Hall".into(), seats }
    }

    #[test]
    fn seats_get_ids_from_section_row_and_number() {
        let v = check_venue(&venue(vec![seat("A", "1", 1), seat("B", "2", 7)]), "gen".into()).unwrap();
        assert_eq!(v.id, "hall");
        assert_eq!(v.seats.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["A-1-1", "B-2-7"]);
        assert_eq!(sections(&v.seats), ["A", "B"]);
        let generated = check_venue(&NewVenue { id: None, ..venue(vec![seat("A", "1", 1)]) }, "v-1".into());
        assert_eq!(generated.unwrap().id, "v-1");
    }

    #[test]
    fn every_wrong_field_is_named() {
        let mut bad = venue(vec![
            seat("A", "1", 1),
            seat("A", "1", 1),
            NewSeat { id: Some("A|1".into()), ..seat("A", "1", 2) },
            seat(" ", "1", 3),
            NewSeat { x: 2_000_000, ..seat("A", "1", 4) },
            seat("A B", "1", 5),
        ]);
        bad.id = Some("Hall!".into());
        bad.name = " ".into();
        let FieldErrors(fields) = check_venue(&bad, "gen".into()).unwrap_err();
        let named: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(
            named,
            ["id", "name", "seats[1].id", "seats[2].id", "seats[3].section", "seats[4].x", "seats[5].id"]
        );
        assert!(fields["seats[1].id"].contains("seats[0]"), "{fields:?}");
        let FieldErrors(fields) = check_venue(&venue(Vec::new()), "gen".into()).unwrap_err();
        assert!(fields.contains_key("seats"));
    }

    #[test]
    fn many_problems_are_summed_up() {
        let seats = (0..100).map(|i| NewSeat { id: Some("bad id".into()), ..seat("A", "1", i) }).collect();
        let FieldErrors(fields) = check_venue(&venue(seats), "gen".into()).unwrap_err();
        assert_eq!(fields.len(), MAX_NAMED + 1);
        assert_eq!(fields["seats"], "and 80 more problems");
    }

    fn csv(text: &str) -> Result<Vec<Seat>, FieldErrors> {
        check_csv_venue(text, Some("hall".into()), "Hall".into(), "gen".into()).map(|v| v.seats)
    }

    #[test]
    fn csv_reads_any_column_order_and_quotes() {
        let text = "\u{feff}x,y,section,row,number,id\r\n10,20,A,1,1,\n\n30,40,\"Box, left\",2,5,box-5\n";
        let seats = csv(text).unwrap();
        assert_eq!(seats.len(), 2);
        assert_eq!((seats[0].id.as_str(), seats[0].section.as_str(), seats[0].x), ("A-1-1", "A", 10));
        assert_eq!((seats[1].id.as_str(), seats[1].section.as_str(), seats[1].y), ("box-5", "Box, left", 40));
    }

    #[test]
    fn csv_errors_name_the_line_all_at_once() {
        let text = "section,row,number,x,y\nA,1,one,0,0\nA,1,2,0\n\"A,1,3,0,0\n\nA,1,4,0,0\nA,1,4,0,0\n, ,5,0,0";
        let FieldErrors(fields) = check_csv_venue(text, Some("Bad!".into()), " ".into(), "gen".into()).unwrap_err();
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["csv line 2", "csv line 3", "csv line 4", "csv line 7", "csv line 8", "id", "name"]
        );
        assert!(fields["csv line 2"].contains("number"));
        assert!(fields["csv line 7"].contains("seats[0]"), "{fields:?}");
        assert!(fields["csv line 8"].contains("section"), "{fields:?}");
        let FieldErrors(fields) = csv("seat,row\nA,1").unwrap_err();
        assert!(fields["csv"].contains("header"));
        assert!(csv("").is_err());
    }
}
