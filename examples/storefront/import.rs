//! Bulk import of a JSON array or a CSV file into one table, and a generator of test files.
//!
//! - Every row is checked whole against the table (`Record::from_json`: attributes, types,
//!   required attributes, and the primary key, which an import requires) before anything
//!   is written; a bad row is skipped and reported with its line and record number.
//! - Rows are written in transactions of [`BATCH_ROWS`]; each row replaces the record with
//!   its primary key, so importing a file again (after an interruption, say) is safe: it
//!   converges to the same records.
//! - A JSON file is checked for well-formedness before the first write, so a truncated or
//!   malformed file imports nothing. A CSV file's header must name attributes of the table.

use std::fmt;
use std::io::Write;
use std::path::Path;

use harper::Record;
use harper::prelude::*;
use harper::schema::{FieldDef, Scalar, TableDef};
use indicatif::ProgressBar;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::schema::Product;

/// Rows per write transaction.
pub const BATCH_ROWS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON array of record objects.
    Json,
    /// A header row of attribute names, then one record per row.
    Csv,
}

impl Format {
    /// By extension (`.csv`, `.json`), else by the first non-blank byte (`[` is JSON).
    pub fn detect(path: &Path, bytes: &[u8]) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => Format::Json,
                _ => Format::Csv,
            },
        }
    }
}

/// A row that was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line where the row starts.
    pub line: u64,
    /// 1-based position of the row among the file's records (CSV: not counting the header).
    pub record: usize,
    pub reason: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (record {}): {}",
            self.line, self.record, self.reason
        )
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportReport {
    /// Rows written whose primary key was new.
    pub created: usize,
    /// Rows written that replaced a record with the same primary key.
    pub replaced: usize,
    pub skipped: Vec<BadRow>,
}

impl ImportReport {
    pub fn written(&self) -> usize {
        self.created + self.replaced
    }
}

/// Why an import stopped. Batches committed before a [`ImportError::Db`] stay; importing
/// the file again is safe.
#[derive(Debug)]
pub enum ImportError {
    Io(std::io::Error),
    /// The file is not a JSON array / CSV that can be read; nothing was written.
    Malformed(String),
    /// The database failed after `written` rows were committed.
    Db {
        written: usize,
        error: harper::Error,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io(e) => write!(f, "cannot read the file: {e}"),
            ImportError::Malformed(m) => write!(f, "{m}; nothing was imported"),
            ImportError::Db { written, error } => write!(
                f,
                "the database failed after {written} rows were committed: {error}; \
                 importing the file again is safe (rows replace records by id)"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

/// Imports `path` into table `def`, showing progress (in bytes of the file) on `progress`.
pub fn import_file(
    db: &Database,
    def: &'static TableDef,
    path: &Path,
    format: Option<Format>,
    progress: &ProgressBar,
) -> Result<ImportReport, ImportError> {
    let bytes = std::fs::read(path).map_err(ImportError::Io)?;
    let format = format.unwrap_or_else(|| Format::detect(path, &bytes));
    import_bytes(db, def, &bytes, format, progress)
}

/// Imports the contents of a file held in memory; see [`import_file`].
pub fn import_bytes(
    db: &Database,
    def: &'static TableDef,
    bytes: &[u8],
    format: Format,
    progress: &ProgressBar,
) -> Result<ImportReport, ImportError> {
    progress.set_length(bytes.len() as u64);
    let mut sink = Sink {
        db,
        def,
        batch: Vec::with_capacity(BATCH_ROWS),
        report: ImportReport::default(),
        progress,
    };
    match format {
        Format::Json => read_json(bytes, &mut sink)?,
        Format::Csv => read_csv(def, bytes, &mut sink)?,
    }
    sink.flush(bytes.len() as u64)?;
    progress.finish();
    Ok(sink.report)
}

/// Collects checked rows and writes them in batches.
struct Sink<'a> {
    db: &'a Database,
    def: &'static TableDef,
    batch: Vec<Record>,
    report: ImportReport,
    progress: &'a ProgressBar,
}

impl Sink<'_> {
    /// One row: checked whole, then queued (or reported and skipped). `offset` is where the
    /// row ends in the file, for the progress bar.
    fn row(
        &mut self,
        line: u64,
        record: usize,
        value: Result<Value, String>,
        offset: u64,
    ) -> Result<(), ImportError> {
        match value.and_then(|v| check_row(self.def, v)) {
            Ok(rec) => {
                self.batch.push(rec);
                if self.batch.len() >= BATCH_ROWS {
                    self.flush(offset)?;
                }
            }
            Err(reason) => self.report.skipped.push(BadRow {
                line,
                record,
                reason,
            }),
        }
        Ok(())
    }

    fn flush(&mut self, offset: u64) -> Result<(), ImportError> {
        let batch = std::mem::take(&mut self.batch);
        if !batch.is_empty() {
            let (created, replaced) = self
                .db
                .write(|tx| {
                    let (mut created, mut replaced) = (0, 0);
                    for rec in batch {
                        if tx.put_record(rec)? {
                            replaced += 1;
                        } else {
                            created += 1;
                        }
                    }
                    Ok::<_, harper::Error>((created, replaced))
                })
                .map_err(|error| ImportError::Db {
                    written: self.report.written(),
                    error,
                })?;
            self.report.created += created;
            self.report.replaced += replaced;
        }
        self.progress.set_position(offset);
        self.progress.set_message(format!(
            "{} rows written, {} skipped",
            self.report.written(),
            self.report.skipped.len()
        ));
        Ok(())
    }
}

/// A row as a checked record of `def`, with its primary key.
fn check_row(def: &'static TableDef, value: Value) -> Result<Record, String> {
    let rec = Record::from_json(def, value).map_err(|e| e.to_string())?;
    if rec.primary_key().is_none_or(Value::is_null) {
        return Err(format!(
            "no {}: imported rows need their primary key, so that importing again replaces \
             them instead of adding copies",
            def.primary_key().name
        ));
    }
    Ok(rec)
}

// ---- JSON ----------------------------------------------------------------------------------

fn read_json(bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Well-formed as a whole before anything is written.
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map_err(|e| ImportError::Malformed(format!("the file is not valid JSON: {e}")))?;
    let mut lines = LineCounter::default();
    let mut pos = skip_ws(bytes, 0);
    if bytes.get(pos) != Some(&b'[') {
        return Err(ImportError::Malformed(
            "a JSON import file must be one array of objects ([{...}, ...])".into(),
        ));
    }
    pos = skip_ws(bytes, pos + 1);
    let mut record = 0;
    if bytes.get(pos) == Some(&b']') {
        return Ok(());
    }
    loop {
        let mut values = serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<Value>();
        let line = lines.line_at(bytes, pos);
        let value = match values.next() {
            Some(Ok(v)) => v,
            // Unreachable after the check above, but never trusted.
            Some(Err(e)) => {
                return Err(ImportError::Malformed(format!(
                    "invalid JSON after line {line}: {e}"
                )));
            }
            None => {
                return Err(ImportError::Malformed(format!(
                    "the array ends early after line {line}"
                )));
            }
        };
        pos += values.byte_offset();
        record += 1;
        let row = match value {
            Value::Object(_) => Ok(value),
            other => Err(format!(
                "a row must be a JSON object, not {}",
                harper::record::json_kind(&other)
            )),
        };
        sink.row(line, record, row, pos as u64)?;
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos = skip_ws(bytes, pos + 1),
            Some(b']') => return Ok(()),
            _ => {
                return Err(ImportError::Malformed(format!(
                    "expected , or ] after the row at line {line}"
                )));
            }
        }
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// Line numbers of increasing byte offsets, counted incrementally.
#[derive(Default)]
struct LineCounter {
    counted_to: usize,
    newlines: u64,
}

impl LineCounter {
    fn line_at(&mut self, bytes: &[u8], pos: usize) -> u64 {
        let end = pos.min(bytes.len());
        if end > self.counted_to {
            self.newlines += bytes[self.counted_to..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.counted_to = end;
        }
        self.newlines + 1
    }
}

// ---- CSV -----------------------------------------------------------------------------------

fn read_csv(def: &'static TableDef, bytes: &[u8], sink: &mut Sink<'_>) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| ImportError::Malformed(format!("cannot read the CSV header: {e}")))?
        .clone();
    let columns = csv_columns(def, &header)?;
    let mut row = csv::ByteRecord::new();
    let mut record = 0;
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                return Err(ImportError::Malformed(format!(
                    "cannot read the CSV after record {record}: {e}"
                )));
            }
        }
        record += 1;
        let line = row.position().map_or(0, csv::Position::line);
        let end = reader.position().byte();
        let value = csv_row(&columns, &row);
        sink.row(line, record, value, end)?;
    }
}

/// The field of each column; the header must name attributes of the table, each once, and
/// include the primary key.
fn csv_columns(
    def: &'static TableDef,
    header: &csv::ByteRecord,
) -> Result<Vec<&'static FieldDef>, ImportError> {
    let mut columns: Vec<&'static FieldDef> = Vec::with_capacity(header.len());
    for name in header.iter() {
        let name = std::str::from_utf8(name)
            .map_err(|_| ImportError::Malformed("the CSV header is not UTF-8".into()))?
            .trim();
        let field = def.field(name).ok_or_else(|| {
            let names: Vec<&str> = def.fields.iter().map(|f| f.name).collect();
            ImportError::Malformed(format!(
                "CSV column {name:?} is not an attribute of {}; its attributes are {}",
                def.name,
                names.join(", ")
            ))
        })?;
        if columns.iter().any(|c| c.name == field.name) {
            return Err(ImportError::Malformed(format!(
                "CSV column {name:?} appears twice"
            )));
        }
        columns.push(field);
    }
    let pk = def.primary_key().name;
    if !columns.iter().any(|c| c.name == pk) {
        return Err(ImportError::Malformed(format!(
            "the CSV header has no {pk} column: imported rows need their primary key"
        )));
    }
    Ok(columns)
}

/// One CSV row as a JSON object, each cell read by its field's type (a cell that does not
/// parse stays a string, so the table's check names the attribute and the type).
fn csv_row(columns: &[&'static FieldDef], row: &csv::ByteRecord) -> Result<Value, String> {
    if row.len() != columns.len() {
        return Err(format!(
            "{} fields where the header has {}",
            row.len(),
            columns.len()
        ));
    }
    let mut object = serde_json::Map::with_capacity(columns.len());
    for (field, cell) in columns.iter().zip(row.iter()) {
        let text = std::str::from_utf8(cell)
            .map_err(|_| format!("the {} cell is not UTF-8", field.name))?;
        if let Some(v) = csv_cell(field, text) {
            object.insert(field.name.to_owned(), v);
        }
    }
    Ok(Value::Object(object))
}

/// A cell's value; `None` leaves the attribute absent (an empty cell, unless the field is a
/// required string, where it is the empty string).
fn csv_cell(field: &FieldDef, text: &str) -> Option<Value> {
    let ty = field.ty;
    if text.is_empty() {
        return (!ty.optional && !ty.list && ty.scalar == Scalar::String)
            .then(|| Value::String(String::new()));
    }
    let as_text = || Value::String(text.to_owned());
    if ty.list || ty.scalar == Scalar::Json {
        return Some(serde_json::from_str(text).unwrap_or_else(|_| as_text()));
    }
    let t = text.trim();
    Some(match ty.scalar {
        Scalar::Bool if t.eq_ignore_ascii_case("true") => Value::Bool(true),
        Scalar::Bool if t.eq_ignore_ascii_case("false") => Value::Bool(false),
        Scalar::Int { .. } => t
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| t.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| as_text()),
        // Read as the JSON reader reads numbers, not with `str::parse`: the record is stored
        // as JSON text and read back with serde_json, whose (default, best-effort) float
        // parser can differ from an exact parse by one unit in the last place for 17-digit
        // values; an index entry made from the exact value would then disagree with the
        // record read back.
        Scalar::Float { .. } => {
            serde_json::from_str::<serde_json::Number>(t).map_or_else(|_| as_text(), Value::Number)
        }
        _ => as_text(),
    })
}

// ---- generator -----------------------------------------------------------------------------

/// Category ids of the generated products (the seed's categories).
const CATEGORY_IDS: [&str; 10] = [
    "electronics",
    "books",
    "toys",
    "home",
    "garden",
    "sports",
    "clothing",
    "beauty",
    "automotive",
    "grocery",
];

/// The `i`-th generated product (`gen-0000001`, ...): deterministic, varied values.
pub fn generated_product(i: usize) -> Product {
    let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let stock = (h >> 40) % 100;
    let category = CATEGORY_IDS[(h % CATEGORY_IDS.len() as u64) as usize];
    let id = format!("gen-{i:07}");
    let image_url = Some(format!("/images/{category}/{id}.svg"));
    Product {
        id: id.into(),
        name: format!("Generated product {i}"),
        description: Some(format!("Generated for import tests, number {i}")),
        price: ((h >> 20) % 100_000 + 99) as f64 / 100.0,
        category_id: category.into(),
        in_stock: stock > 0,
        stock_quantity: stock as i32,
        image_url,
        created_at: None,
        category: Link::new(),
    }
}

/// Writes `count` generated products to `out` as a JSON array (one product per line) or CSV.
pub fn write_products(out: &mut impl Write, count: usize, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            out.write_all(b"[")?;
            for i in 0..count {
                out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut *out, &generated_product(i))?;
            }
            out.write_all(b"\n]\n")
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "name",
                "description",
                "price",
                "categoryId",
                "inStock",
                "stockQuantity",
                "imageUrl",
            ])?;
            for i in 0..count {
                let p = generated_product(i);
                w.write_record([
                    p.id.to_string(),
                    p.name,
                    p.description.unwrap_or_default(),
                    p.price.to_string(),
                    p.category_id.to_string(),
                    p.in_stock.to_string(),
                    p.stock_quantity.to_string(),
                    p.image_url.unwrap_or_default(),
                ])?;
            }
            w.flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Category;

    fn db() -> Database {
        let db = Database::temporary().unwrap();
        db.register::<Product>().unwrap();
        db.register::<Category>().unwrap();
        db
    }

    fn import(db: &Database, bytes: &[u8], format: Format) -> ImportReport {
        import_bytes(db, Product::DEF, bytes, format, &ProgressBar::hidden()).unwrap()
    }

    #[test]
    fn generated_files_import_in_both_formats_and_reimport_replaces() {
        for format in [Format::Json, Format::Csv] {
            let db = db();
            let mut file = Vec::new();
            write_products(&mut file, 2 * BATCH_ROWS + 10, format).unwrap();
            let first = import(&db, &file, format);
            assert_eq!(
                (first.created, first.replaced, first.skipped.len()),
                (2 * BATCH_ROWS + 10, 0, 0),
                "{format:?}"
            );
            let again = import(&db, &file, format);
            assert_eq!((again.created, again.replaced), (0, 2 * BATCH_ROWS + 10));
            let p = db.get::<Product>("gen-0000007").unwrap().unwrap();
            assert_eq!(p, generated_product(7), "{format:?}");
            let all = db.read(|tx| tx.query::<Product>(&Query::new())).unwrap();
            assert_eq!(all.len(), 2 * BATCH_ROWS + 10);
            db.check_integrity().unwrap();
        }
    }

    #[test]
    fn bad_json_rows_are_skipped_with_their_line() {
        let db = db();
        let file = br#"[
  {"id":"a","name":"A","price":1,"categoryId":"toys","inStock":true,"stockQuantity":1},
  {"id":"b","name":"B","price":"cheap","categoryId":"toys","inStock":true,"stockQuantity":1},
  {"name":"C","price":1,"categoryId":"toys","inStock":true,"stockQuantity":1},
  42,
  {"id":"e","name":"E","price":1,"categoryId":"toys","inStock":true,
   "stockQuantity":1,"colour":"red"},
  {"id":"f","name":"F","price":2,"categoryId":"toys","inStock":false,"stockQuantity":0}
]"#;
        let report = import(&db, file, Format::Json);
        assert_eq!((report.created, report.replaced), (2, 0));
        let where_: Vec<(u64, usize)> = report.skipped.iter().map(|b| (b.line, b.record)).collect();
        assert_eq!(where_, vec![(3, 2), (4, 3), (5, 4), (6, 5)]);
        assert!(
            report.skipped[0].reason.contains("price"),
            "{:?}",
            report.skipped[0]
        );
        assert!(
            report.skipped[1].reason.contains("no id"),
            "{:?}",
            report.skipped[1]
        );
        assert!(
            report.skipped[2].reason.contains("not a number"),
            "{:?}",
            report.skipped[2]
        );
        assert!(
            report.skipped[3].reason.contains("colour"),
            "{:?}",
            report.skipped[3]
        );
        assert!(db.get::<Product>("a").unwrap().is_some());
        assert!(db.get::<Product>("b").unwrap().is_none());
        assert!(db.get::<Product>("e").unwrap().is_none());
        assert_eq!(db.get::<Product>("f").unwrap().unwrap().price, 2.0);
    }

    #[test]
    fn malformed_or_non_array_json_imports_nothing() {
        let db = db();
        let truncated = br#"[{"id":"a","name":"A","price":1,"categoryId":"toys","inStock":true,"stockQuantity":1},
{"id":"b","#;
        for file in [&truncated[..], b"{\"id\":\"a\"}", b""] {
            let r = import_bytes(
                &db,
                Product::DEF,
                file,
                Format::Json,
                &ProgressBar::hidden(),
            );
            assert!(matches!(r, Err(ImportError::Malformed(_))), "{r:?}");
        }
        assert!(db.get::<Product>("a").unwrap().is_none());
        assert_eq!(import(&db, b" [ ] ", Format::Json), ImportReport::default());
    }

    #[test]
    fn csv_cells_are_typed_by_the_table_and_bad_rows_name_their_line() {
        let db = db();
        let file = b"id,name,price,categoryId,inStock,stockQuantity,description\n\
a,\"Quoted, name\",1.5,toys,true,3,\n\
b,B,abc,toys,true,3,x\n\
c,C,2,toys,TRUE\n\
\"d\",\"multi\nline\",4,toys,false,0,\"said \"\"hi\"\"\"\n\
e,E,5,toys,maybe,1,\n";
        let report = import(&db, file, Format::Csv);
        assert_eq!(report.created, 2);
        let where_: Vec<(u64, usize)> = report.skipped.iter().map(|b| (b.line, b.record)).collect();
        assert_eq!(where_, vec![(3, 2), (4, 3), (7, 5)]);
        assert!(report.skipped[0].reason.contains("price"));
        assert!(
            report.skipped[1]
                .reason
                .contains("5 fields where the header has 7")
        );
        assert!(report.skipped[2].reason.contains("inStock"));
        let a = db.get::<Product>("a").unwrap().unwrap();
        assert_eq!(
            (a.name.as_str(), a.price, a.in_stock, a.stock_quantity),
            ("Quoted, name", 1.5, true, 3)
        );
        assert_eq!(a.description, None, "an empty optional cell is absent");
        let d = db.get::<Product>("d").unwrap().unwrap();
        assert_eq!(d.name, "multi\nline");
        assert_eq!(d.description.as_deref(), Some("said \"hi\""));
    }

    #[test]
    fn csv_floats_are_read_as_json_reads_them() {
        let db = db();
        // 1.1099999999999999 is a shortest representation that serde_json reads as 1.11.
        let file = b"id,name,price,categoryId,inStock,stockQuantity\n\
a,A,1.1099999999999999,toys,true,1\n\
b,B,7,toys,true,1\n";
        assert_eq!(import(&db, file, Format::Csv).created, 2);
        let json: f64 = serde_json::from_str("1.1099999999999999").unwrap();
        assert_eq!(db.get::<Product>("a").unwrap().unwrap().price, json);
        assert_eq!(db.get::<Product>("b").unwrap().unwrap().price, 7.0);
        db.check_integrity().unwrap();
    }

    #[test]
    fn csv_headers_must_name_attributes_and_the_key() {
        let db = db();
        for (file, needle) in [
            (&b"id,name,colour\na,A,red\n"[..], "colour"),
            (b"name,price\nA,1\n", "no id column"),
            (b"id,id\na,a\n", "twice"),
        ] {
            match import_bytes(&db, Product::DEF, file, Format::Csv, &ProgressBar::hidden()) {
                Err(ImportError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn format_detection() {
        assert_eq!(Format::detect(Path::new("x.CSV"), b"["), Format::Csv);
        assert_eq!(Format::detect(Path::new("x.json"), b"id"), Format::Json);
        assert_eq!(Format::detect(Path::new("x"), b"  [{}]"), Format::Json);
        assert_eq!(Format::detect(Path::new("x.txt"), b"id,name"), Format::Csv);
    }
}
