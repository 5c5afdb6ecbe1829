//! `stockroom export` and `stockroom import`: stock records (and the history) out as JSON
//! lines or CSV, and stock levels in through the same write path as the API.
//!
//! Import reads the file in batches. Each batch is checked whole first — a bad line is reported
//! with its number and nothing of its batch is applied — then planned against the records as
//! they are now ([`stockroom_dashboard::levels`]) and sent through the store's `execute`, so the
//! group-commit writer commits it in atomic transactions and writes a history entry per change
//! (reason `import`). Planning from what the database holds makes a second import of the same
//! file change nothing, and a rerun after a crash finish what the first run started.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use stockroom_dashboard::levels::{self, Tally, Target, PHASES};
use stockroom_domain::limits::{LOCATION_SLUG_LEN_MAX, MULTIPLE_IDS_MAX};
use stockroom_domain::{ProductId, StockLevel};
use stockroom_store::{Outcome, SqlStore, Store, WriteRequest, NO_LOCATION};

/// Records read from the database at once when exporting.
const EXPORT_PAGE_ROWS: u64 = 5000;
/// The reason written on every history entry an import makes (where the command takes one).
const REASON: &str = "import";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Args)]
pub struct ExportArgs {
    /// jsonl: one JSON object a line; csv: a header line, then one record a line.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Export the history (every entry, in the order applied) instead of the stock records.
    #[arg(long)]
    history: bool,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct ImportArgs {
    /// A JSON-lines or CSV file of stock levels: product_id, location (empty or absent: no
    /// location), total, and optionally allocated (and available, checked against them).
    file: PathBuf,
    /// jsonl or csv; by default, the file's extension (.csv) says.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Check the file and show what would change, changing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Lines checked, and applied, together (also the most changes committed in one
    /// transaction).
    #[arg(long, default_value_t = 4000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    batch_lines: u64,
}

impl ImportArgs {
    /// The writer's settings for an import: a batch's changes of one phase fit in one
    /// transaction (one fsync), instead of the server's 256 jobs per transaction.
    pub fn open_options(&self, base: stockroom_store::OpenOptions) -> stockroom_store::OpenOptions {
        let lines = usize::try_from(self.batch_lines).unwrap_or(4000);
        stockroom_store::OpenOptions {
            write_batch_max: lines,
            write_queue_capacity: 2 * lines,
            ..base
        }
    }
}

/// One stock record as exported, and as imported.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub product_id: String,
    #[serde(default)]
    pub location: String,
    pub total: Option<i64>,
    #[serde(default)]
    pub allocated: Option<i64>,
    #[serde(default)]
    pub available: Option<i64>,
}

/// One history entry as exported.
#[derive(Serialize)]
struct EntryLine<'a> {
    id: &'a str,
    product_id: &'a str,
    location: &'a str,
    action: &'a str,
    quantity: u64,
    total: u64,
    allocated: u64,
    available: u64,
    order_id: &'a str,
    reason: &'a str,
    created_at: String,
}

fn rfc3339(t: stockroom_domain::Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.micros()) * 1000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Writes rows as JSON lines or CSV.
enum Sink {
    Jsonl(Box<dyn Write>),
    Csv(Box<csv::Writer<Box<dyn Write>>>),
}

impl Sink {
    fn new(format: Format, out: Box<dyn Write>) -> Sink {
        match format {
            Format::Jsonl => Sink::Jsonl(out),
            Format::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(out))),
        }
    }

    fn row(&mut self, row: &impl Serialize) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(out) => {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
            Sink::Csv(out) => out.serialize(row)?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(mut out) => out.flush()?,
            Sink::Csv(mut out) => out.flush()?,
        }
        Ok(())
    }
}

pub async fn export(store: Arc<SqlStore>, args: ExportArgs) -> anyhow::Result<()> {
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut sink = Sink::new(args.format, out);
    if args.history {
        export_history(&*store, &mut sink).await?;
    } else {
        export_records(&*store, &mut sink).await?;
    }
    sink.finish()
}

async fn export_records(store: &dyn Store, sink: &mut Sink) -> anyhow::Result<()> {
    let mut after: Option<(ProductId, String)> = None;
    loop {
        let page = store
            .stock_records_after(after.as_ref(), EXPORT_PAGE_ROWS)
            .await?;
        for r in &page {
            sink.row(&RecordLine {
                product_id: r.product_id.to_string(),
                location: r.location.clone(),
                total: Some(figure(r.stock.total())),
                allocated: Some(figure(r.stock.allocated())),
                available: Some(figure(r.stock.available())),
            })?;
        }
        match page.last() {
            Some(r) if page.len() as u64 == EXPORT_PAGE_ROWS => {
                after = Some((r.product_id.clone(), r.location.clone()))
            }
            _ => return Ok(()),
        }
    }
}

async fn export_history(store: &dyn Store, sink: &mut Sink) -> anyhow::Result<()> {
    let mut seq = 0;
    loop {
        let page = store.history_after(seq, EXPORT_PAGE_ROWS).await?;
        for s in &page {
            let e = &s.entry;
            sink.row(&EntryLine {
                id: &e.id,
                product_id: e.product_id.as_str(),
                location: &e.location,
                action: e.action.as_str(),
                quantity: e.quantity,
                total: e.after.total(),
                allocated: e.after.allocated(),
                available: e.after.available(),
                order_id: e.order_id.as_deref().unwrap_or(""),
                reason: e.reason.as_deref().unwrap_or(""),
                created_at: rfc3339(e.created_at),
            })?;
        }
        match page.last() {
            Some(s) if page.len() as u64 == EXPORT_PAGE_ROWS => seq = s.seq,
            _ => return Ok(()),
        }
    }
}

fn figure(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A checked line: where it was, and what its record should hold.
struct Checked {
    line: u64,
    product: ProductId,
    target: Target,
}

/// Checks one line's fields; the error says what is wrong in a person's words.
fn check(record: RecordLine) -> Result<(ProductId, Target), String> {
    let product = ProductId::parse(&record.product_id)
        .map_err(|e| format!("product_id {:?} {e}", record.product_id))?;
    let location = record.location.trim().to_owned();
    if location.len() > LOCATION_SLUG_LEN_MAX {
        return Err(format!(
            "location is longer than {LOCATION_SLUG_LEN_MAX} bytes"
        ));
    }
    let level = |name: &str, v: i64| {
        StockLevel::new(v)
            .map_err(|_| format!("{name} must be a whole number from 0 to 1000000000"))
    };
    let total = level("total", record.total.ok_or("total is required")?)?;
    let allocated = record
        .allocated
        .map(|a| level("allocated", a))
        .transpose()?;
    if let Some(a) = allocated {
        if a.get() > total.get() {
            return Err("allocated exceeds total".into());
        }
        if let Some(available) = record.available {
            if u64::try_from(available).ok() != Some(total.get() - a.get()) {
                return Err("available is not total - allocated".into());
            }
        }
    }
    Ok((
        product,
        Target {
            location,
            total,
            allocated,
        },
    ))
}

/// The lines of a file, parsed, with their line numbers and how far into the file they end.
type Parsed = (u64, Result<RecordLine, String>, u64);

/// JSON lines; blank lines are skipped (a file may end with one).
fn jsonl_lines(reader: impl BufRead) -> impl Iterator<Item = Parsed> {
    let mut offset = 0u64;
    reader.split(b'\n').enumerate().filter_map(move |(i, raw)| {
        let line = i as u64 + 1;
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => return Some((line, Err(format!("cannot read: {e}")), offset)),
        };
        offset += raw.len() as u64 + 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let parsed = serde_json::from_slice::<RecordLine>(&raw).map_err(|e| e.to_string());
        Some((line, parsed, offset))
    })
}

fn csv_lines(reader: impl Read) -> impl Iterator<Item = Parsed> {
    let mut csv = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = csv.headers().cloned().unwrap_or_default();
    csv.into_records().map(move |record| match record {
        Ok(r) => {
            let pos = r.position().map_or((0, 0), |p| (p.line(), p.byte()));
            let parsed = r
                .deserialize::<RecordLine>(Some(&headers))
                .map_err(|e| e.to_string());
            (pos.0, parsed, pos.1 + r.as_slice().len() as u64)
        }
        Err(e) => {
            let pos = e.position().map_or((0, 0), |p| (p.line(), p.byte()));
            (pos.0, Err(e.to_string()), pos.1)
        }
    })
}

/// What an import did (or, dry, would do).
#[derive(Default)]
struct Summary {
    lines: u64,
    tally: Tally,
    bad_lines: u64,
    skipped_batches: u64,
    refused: u64,
}

fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

pub async fn import(store: Arc<SqlStore>, args: ImportArgs) -> anyhow::Result<bool> {
    let file =
        File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let format = args.format.unwrap_or_else(|| guess(&args.file));
    let reader = BufReader::with_capacity(1 << 20, file);
    let lines: Box<dyn Iterator<Item = Parsed>> = match format {
        Format::Jsonl => Box::new(jsonl_lines(reader)),
        Format::Csv => Box::new(csv_lines(reader)),
    };
    let bar = progress(len);
    let mut summary = Summary::default();
    let mut lines = lines.peekable();
    while lines.peek().is_some() {
        let batch: Vec<Parsed> = lines.by_ref().take(args.batch_lines as usize).collect();
        let read_to = batch.last().map_or(0, |b| b.2);
        summary.lines += batch.len() as u64;
        let checked = check_batch(&*store, batch, &mut summary).await?;
        if let Some(checked) = checked {
            apply_batch(&*store, checked, args.dry_run, &mut summary).await?;
        }
        bar.set_position(read_to.min(len));
    }
    bar.finish_and_clear();
    report(&summary, args.dry_run);
    Ok(summary.bad_lines == 0 && summary.refused == 0)
}

fn guess(path: &Path) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
        _ => Format::Jsonl,
    }
}

/// Checks every line of a batch, and that each location exists; `None` (and each bad line
/// reported) if any line is bad.
async fn check_batch(
    store: &dyn Store,
    batch: Vec<Parsed>,
    summary: &mut Summary,
) -> anyhow::Result<Option<Vec<Checked>>> {
    let mut good = Vec::with_capacity(batch.len());
    let mut bad = Vec::new();
    let mut places: HashMap<String, bool> = HashMap::new();
    for (line, parsed, _) in batch {
        match parsed.and_then(check) {
            Ok((product, target)) => {
                let known = match places.get(&target.location) {
                    Some(known) => *known,
                    None => {
                        let known = target.location == NO_LOCATION
                            || store.location_by_slug(&target.location).await?.is_some();
                        places.insert(target.location.clone(), known);
                        known
                    }
                };
                if known {
                    good.push(Checked {
                        line,
                        product,
                        target,
                    });
                } else {
                    bad.push((line, format!("no location with slug {:?}", target.location)));
                }
            }
            Err(why) => bad.push((line, why)),
        }
    }
    if bad.is_empty() {
        return Ok(Some(good));
    }
    let first = good
        .first()
        .map(|c| c.line)
        .into_iter()
        .chain(bad.first().map(|b| b.0))
        .min()
        .unwrap_or(0);
    for (line, why) in &bad {
        eprintln!("line {line}: {why}");
    }
    eprintln!(
        "the batch from line {first} was not applied ({} bad lines)",
        bad.len()
    );
    summary.bad_lines += bad.len() as u64;
    summary.skipped_batches += 1;
    Ok(None)
}

/// Plans a checked batch against the records as they are, and (unless dry) applies it phase by
/// phase, every command of a phase at once.
async fn apply_batch(
    store: &dyn Store,
    checked: Vec<Checked>,
    dry_run: bool,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let mut by_product: BTreeMap<ProductId, BTreeMap<String, (u64, Target)>> = BTreeMap::new();
    for c in checked {
        // A later line for the same record wins.
        by_product
            .entry(c.product)
            .or_default()
            .insert(c.target.location.clone(), (c.line, c.target));
    }
    let ids: Vec<ProductId> = by_product.keys().cloned().collect();
    let mut current: HashMap<ProductId, stockroom_store::ProductStock> = HashMap::new();
    // In the API's chunks (`multiple` takes 100): `stocks_by_ids` matches its answer to the
    // ids asked one by one, which grows with the square of the ids.
    for chunk in ids.chunks(MULTIPLE_IDS_MAX) {
        for stock in store.stocks_by_ids(chunk).await? {
            current.insert(stock.product_id.clone(), stock);
        }
    }
    if !allowed(&by_product, &current, summary) {
        return Ok(());
    }
    let mut phases: [Vec<(u64, stockroom_store::Command)>; PHASES] = Default::default();
    for (product, targets) in &by_product {
        let line = targets.values().map(|(l, _)| *l).min().unwrap_or(0);
        let targets: Vec<Target> = targets.values().map(|(_, t)| t.clone()).collect();
        let plan = levels::plan(product, current.get(product), &targets, Some(REASON));
        summary.tally.created += plan.tally.created;
        summary.tally.changed += plan.tally.changed;
        summary.tally.unchanged += plan.tally.unchanged;
        for (phase, commands) in plan.phases.into_iter().enumerate() {
            phases[phase].extend(commands.into_iter().map(|c| (line, c)));
        }
    }
    if dry_run {
        return Ok(());
    }
    for phase in phases {
        let answers =
            futures::future::join_all(phase.into_iter().map(|(line, command)| async move {
                (line, store.execute(WriteRequest::new(command)).await)
            }))
            .await;
        for (line, answer) in answers {
            if let Outcome::Refused(why) =
                answer.context("the database refused the import")?.outcome
            {
                eprintln!("line {line}: refused: {why:?}");
                summary.refused += 1;
            }
        }
    }
    Ok(())
}

/// Whether every target can be reached from the records as they are: an import may not
/// release what orders hold, nor set a total below what stays allocated. If not, each such
/// line is reported and the batch is not applied.
fn allowed(
    by_product: &BTreeMap<ProductId, BTreeMap<String, (u64, Target)>>,
    current: &HashMap<ProductId, stockroom_store::ProductStock>,
    summary: &mut Summary,
) -> bool {
    let mut bad = Vec::new();
    for (product, targets) in by_product {
        for (location, (line, t)) in targets {
            let Some(now) = current
                .get(product)
                .and_then(|p| p.at(location))
                .map(|r| r.stock)
            else {
                continue;
            };
            let allocated = t.allocated.map_or(now.allocated(), StockLevel::get);
            if allocated < now.held() {
                bad.push((
                    *line,
                    format!(
                        "{} units are held by orders; an import cannot release them",
                        now.held()
                    ),
                ));
            } else if t.total.get() < allocated {
                bad.push((
                    *line,
                    format!(
                        "total {} is below the {allocated} units allocated",
                        t.total.get()
                    ),
                ));
            }
        }
    }
    if bad.is_empty() {
        return true;
    }
    bad.sort();
    for (line, why) in &bad {
        eprintln!("line {line}: {why}");
    }
    eprintln!("the batch holding line {} was not applied", bad[0].0);
    summary.bad_lines += bad.len() as u64;
    summary.skipped_batches += 1;
    false
}

fn report(s: &Summary, dry_run: bool) {
    let verb = if dry_run { "would be" } else { "were" };
    println!(
        "{} lines read: {} records {verb} created, {} {verb} changed, {} already matched",
        s.lines, s.tally.created, s.tally.changed, s.tally.unchanged
    );
    if s.bad_lines > 0 {
        println!(
            "{} bad lines; {} batches not applied",
            s.bad_lines, s.skipped_batches
        );
    }
    if s.refused > 0 {
        println!(
            "{} changes refused (the stock moved meanwhile: run the import again)",
            s.refused
        );
    }
    if dry_run {
        println!("dry run: nothing was changed");
    }
}

/// Exits with an error if the export's format cannot hold what is asked.
pub fn check_export(args: &ExportArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.output {
        if path.exists() {
            bail!("{} exists already; give a new file", path.display());
        }
    }
    Ok(())
}
