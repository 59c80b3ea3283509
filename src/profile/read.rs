//! Reading training data: input formats, the streaming readers, progress, and
//! [`build_profile`], which runs a file through a profiler.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};

use super::profiler::Profiler;
use super::{show_path, Profile, ProfileError, Task, TaskChoice};

/// Rows per record batch when reading.
const BATCH_ROWS: usize = 8192;
/// Records read to infer the schema of CSV and JSON Lines files.
const INFER_RECORDS: usize = 100_000;

/// Options of [`build_profile`].
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Training data.
    pub input: PathBuf,
    /// Model the profile is for.
    pub model: Option<String>,
    /// Model version the profile is for.
    pub version: Option<String>,
    /// Quantile bins of numeric columns.
    pub bins: usize,
    /// Categories kept per categorical column; the rest are "other".
    pub top_k: usize,
    /// Columns to leave out (ids, timestamps the model does not see).
    pub exclude: Vec<String>,
    /// What `prediction` and `label` are; inferred from their column types when `None`.
    pub task: Option<Task>,
    /// Show progress on stderr.
    pub progress: bool,
}

impl BaselineOptions {
    /// Defaults for `input`: the engine's default bins and category bound.
    pub fn new(input: impl Into<PathBuf>) -> Self {
        let d = crate::config::DriftConfig::default();
        BaselineOptions {
            input: input.into(),
            model: None,
            version: None,
            bins: d.bins,
            top_k: d.max_reference_categories,
            exclude: Vec::new(),
            task: None,
            progress: false,
        }
    }
}

/// Numbers of a [`build_profile`] run, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildStats {
    /// Rows read.
    pub rows: u64,
    /// Bytes of the input file.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The task used, and how it was decided.
    pub task: TaskChoice,
}

/// Input formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `.parquet`, `.pq`.
    Parquet,
    /// `.arrow`, `.ipc`, `.feather`: the IPC file format, or the stream format.
    ArrowIpc,
    /// `.csv`, with a header line.
    Csv,
    /// `.jsonl`, `.ndjson`, `.json`: one object per line.
    JsonLines,
}

impl InputFormat {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self, ProfileError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            "arrow" | "ipc" | "feather" | "arrows" => Ok(InputFormat::ArrowIpc),
            "csv" => Ok(InputFormat::Csv),
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::JsonLines),
            _ => Err(ProfileError::UnknownFormat { path: show_path(path) }),
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Parquet => "Parquet",
            InputFormat::ArrowIpc => "Arrow IPC",
            InputFormat::Csv => "CSV",
            InputFormat::JsonLines => "JSON Lines",
        }
    }
}

/// A `Read` that counts the bytes it returned, for progress.
#[derive(Debug)]
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A [`CountingReader`] over a file that can also seek (the IPC file format reads its footer
/// first, so its byte count is only a rough progress measure).
#[derive(Debug)]
struct SeekableCounting(CountingReader<File>);

impl Read for SeekableCounting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for SeekableCounting {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.inner.seek(pos)
    }
}

/// How far a reader has come, for progress.
#[derive(Debug, Clone)]
enum Extent {
    /// Rows out of a known total.
    Rows(u64),
    /// Bytes read out of the file size.
    Bytes(Arc<AtomicU64>, u64),
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>;
/// Opens a source for reading the given columns (schema indices, ascending).
type OpenProjected = Box<dyn FnOnce(Vec<usize>) -> Result<(Batches, Extent), ArrowError>>;

/// Rewrites "column N" in arrow-csv messages to name the column.
fn name_csv_column(message: &str, schema: &Schema) -> String {
    let Some(at) = message.find("for column ") else {
        return message.to_owned();
    };
    let rest = &message[at + "for column ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<usize>().ok().and_then(|i| schema.fields().get(i)) {
        Some(f) => {
            format!("{} (`{}`){}", &message[..at + "for column ".len() + digits.len()], f.name(), &rest[digits.len()..])
        }
        None => message.to_owned(),
    }
}

/// Integers become floats (every number is profiled as f64), so that a later `1.5` in a column
/// inferred from `1, 2, 3` still parses.
fn widen_inferred(schema: Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => f.as_ref().clone().with_data_type(DataType::Float64),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// An open training file: its schema, and a way to read the projected columns.
struct Source {
    format: InputFormat,
    schema: SchemaRef,
    open: OpenProjected,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("format", &self.format).field("schema", &self.schema).finish_non_exhaustive()
    }
}

fn open_source(path: &Path, size: u64) -> Result<Source, ProfileError> {
    let format = InputFormat::of(path)?;
    let p = show_path(path);
    let io_err = |cause: io::Error| ProfileError::Io { path: p.clone(), cause };
    let corrupt = |e: &dyn std::fmt::Display| ProfileError::Corrupt {
        path: p.clone(),
        format: format.name(),
        message: e.to_string(),
    };
    // A text format's inferred schema (widened), and its file back at the start with a counter
    // of the bytes read from there.
    let rewind = |inferred: Result<(Schema, usize), ArrowError>, buf: BufReader<File>| {
        let (schema, records) = inferred.map_err(|e| corrupt(&e))?;
        if records == 0 {
            return Err(ProfileError::NoRows { path: p.clone() });
        }
        let mut file = buf.into_inner();
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        Ok((Arc::new(widen_inferred(schema)), file, Arc::new(AtomicU64::new(0))))
    };
    let file = File::open(path).map_err(io_err)?;
    match format {
        InputFormat::Parquet => {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            use parquet::arrow::ProjectionMask;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?.with_batch_size(BATCH_ROWS);
            let schema = builder.schema().clone();
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
                    let reader =
                        builder.with_projection(mask).build().map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                    Ok((Box::new(reader) as Batches, Extent::Rows(rows)))
                }),
            })
        }
        InputFormat::ArrowIpc => {
            use arrow::ipc::reader::{FileReader, StreamReader};
            let mut file = file;
            let mut magic = [0u8; 6];
            let n = file.read(&mut magic).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let is_file = n == 6 && &magic == b"ARROW1";
            let schema = if is_file {
                FileReader::try_new_buffered(file, None).map_err(|e| corrupt(&e))?.schema()
            } else {
                StreamReader::try_new_buffered(file, None).map_err(|e| corrupt(&e))?.schema()
            };
            let path = path.to_owned();
            Ok(Source {
                format,
                schema,
                // Reopened with the projection, so unused columns are never decoded.
                open: Box::new(move |projection| {
                    let read = Arc::new(AtomicU64::new(0));
                    let counting = CountingReader { inner: File::open(&path)?, read: read.clone() };
                    let batches: Batches = if is_file {
                        Box::new(FileReader::try_new_buffered(SeekableCounting(counting), Some(projection))?)
                    } else {
                        Box::new(StreamReader::try_new_buffered(counting, Some(projection))?)
                    };
                    Ok((batches, Extent::Bytes(read, size)))
                }),
            })
        }
        InputFormat::Csv => {
            use arrow::csv::reader::Format;
            let fmt = Format::default().with_header(true);
            let mut buf = BufReader::new(file);
            let inferred = fmt.infer_schema(&mut buf, Some(INFER_RECORDS));
            let (schema, file, read) = rewind(inferred, buf)?;
            let s2 = schema.clone();
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    let counting = CountingReader { inner: file, read: read.clone() };
                    let reader = arrow::csv::ReaderBuilder::new(s2.clone())
                        .with_header(true)
                        .with_batch_size(BATCH_ROWS)
                        .with_projection(projection)
                        .build(counting)?;
                    let batches = reader.map(move |b| {
                        b.map_err(|e| match e {
                            ArrowError::ParseError(m) => ArrowError::ParseError(name_csv_column(&m, &s2)),
                            ArrowError::CsvError(m) => ArrowError::CsvError(name_csv_column(&m, &s2)),
                            other => other,
                        })
                    });
                    Ok((Box::new(batches) as Batches, Extent::Bytes(read, size)))
                }),
            })
        }
        InputFormat::JsonLines => {
            let mut buf = BufReader::new(file);
            let first = buf.fill_buf().map_err(io_err)?;
            if first.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b == b'[') {
                return Err(corrupt(&"the file holds a JSON array; profiles read JSON Lines (one object per line)"));
            }
            let inferred = arrow::json::reader::infer_json_schema(&mut buf, Some(INFER_RECORDS));
            let (schema, file, read) = rewind(inferred, buf)?;
            let full = schema.clone();
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    // Only the projected fields: other keys are ignored, never decoded.
                    let projected = Arc::new(full.project(&projection)?);
                    let counting = CountingReader { inner: file, read: read.clone() };
                    let reader = arrow::json::ReaderBuilder::new(projected)
                        .with_batch_size(BATCH_ROWS)
                        .with_coerce_primitive(true)
                        .build(BufReader::with_capacity(1 << 16, counting))?;
                    Ok((Box::new(reader) as Batches, Extent::Bytes(read, size)))
                }),
            })
        }
    }
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Throttled progress line on stderr.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn tick(&mut self, rows: u64, extent: &Extent) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let frac = match extent {
            Extent::Rows(total) => (*total > 0).then(|| rows as f64 / *total as f64),
            Extent::Bytes(read, size) => (*size > 0).then(|| read.load(Ordering::Relaxed) as f64 / *size as f64),
        };
        match frac {
            Some(f) => eprint!("\rbaseline: {rows} rows ({:.0}%)   ", (f * 100.0).min(100.0)),
            None => eprint!("\rbaseline: {rows} rows   "),
        }
        self.shown = true;
    }

    fn done(&self) {
        if self.shown {
            eprint!("\r{:60}\r", "");
        }
    }
}

/// Profiles a training file, streaming it batch by batch.
pub fn build_profile(opts: &BaselineOptions) -> Result<(Profile, BuildStats), ProfileError> {
    let started = Instant::now();
    let path = opts.input.as_path();
    let p = show_path(path);
    if opts.bins < 2 {
        return Err(ProfileError::Usage(format!("--bins must be at least 2 (got {})", opts.bins)));
    }
    if opts.top_k == 0 {
        return Err(ProfileError::Usage("--top-k must be at least 1".into()));
    }
    InputFormat::of(path)?;
    let size = std::fs::metadata(path).map_err(|cause| ProfileError::Io { path: p.clone(), cause })?.len();
    if size == 0 {
        return Err(ProfileError::EmptyFile { path: p });
    }
    let source = open_source(path, size)?;
    let format = source.format;
    let mut profiler = Profiler::new(&p, &source.schema, &opts.exclude, opts.task)?;
    // The hash needs its own pass over the bytes; it runs beside the profiling.
    let hash_path = path.to_owned();
    let hasher = std::thread::spawn(move || sha256_file(&hash_path));
    let (batches, extent) = (source.open)(profiler.projection()).map_err(|e| ProfileError::Corrupt {
        path: p.clone(),
        format: format.name(),
        message: e.to_string(),
    })?;
    let mut progress = Progress { enabled: opts.progress, last: Instant::now(), shown: false };
    for batch in batches {
        let batch = batch.map_err(|e| ProfileError::Corrupt {
            path: p.clone(),
            format: format.name(),
            message: e.to_string(),
        })?;
        profiler.add(&batch)?;
        progress.tick(profiler.rows, &extent);
    }
    progress.done();
    let sha = hasher
        .join()
        .map_err(|_| ProfileError::Io { path: p.clone(), cause: io::Error::other("the hashing thread panicked") })?
        .map_err(|cause| ProfileError::Io { path: p.clone(), cause })?;
    let rows = profiler.rows;
    let (profile, task) = profiler.finish(opts, sha)?;
    Ok((profile, BuildStats { rows, bytes: size, elapsed: started.elapsed(), task }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_messages_name_the_column() {
        let schema =
            Schema::new(vec![Field::new("a", DataType::Float64, true), Field::new("age", DataType::Float64, true)]);
        let m = name_csv_column("Error while parsing value 'x' as type 'Float64' for column 1 at line 7", &schema);
        assert!(m.contains("column 1 (`age`) at line 7"), "{m}");
    }
}
