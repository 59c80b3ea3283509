//! Writes a large synthetic training file for measuring `driftwatch baseline` at scale:
//! `ROWS` rows × 20 columns (14 numeric, 4 categorical, `prediction`, `label`), Snappy-compressed
//! Parquet in row groups of 1 Mi rows, generated batch by batch in bounded memory.
//!
//! ```text
//! cargo run --release --example make_training_parquet -- /tmp/big.parquet 10000000
//! /usr/bin/time -v target/release/driftwatch baseline --input /tmp/big.parquet --out /tmp/big.arrow
//! ```

use std::fs::File;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;

const BATCH: usize = 65_536;
const COUNTRIES: [&str; 5] = ["US", "DE", "FR", "GB", "JP"];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: make_training_parquet OUT.parquet [ROWS]")?;
    let rows: usize = args.next().map_or(Ok(10_000_000), |r| r.parse())?;
    let mut fields = Vec::new();
    for i in 0..12 {
        fields.push(Field::new(format!("x{i:02}"), DataType::Float64, true));
    }
    fields.push(Field::new("age", DataType::Int64, false));
    fields.push(Field::new("visits", DataType::Int64, false));
    fields.push(Field::new("country", DataType::Utf8, false));
    fields.push(Field::new("device", DataType::Utf8, false));
    fields.push(Field::new("merchant", DataType::Utf8, false));
    fields.push(Field::new("is_new", DataType::Boolean, false));
    fields.push(Field::new("prediction", DataType::Utf8, false));
    fields.push(Field::new("label", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut w = ArrowWriter::try_new(File::create(&path)?, schema.clone(), Some(props))?;
    let mut rng = Pcg64::seed_from_u64(42);
    let merchants: Vec<String> = (0..1000).map(|i| format!("merchant-{i:04}")).collect();
    let mut done = 0;
    while done < rows {
        let n = BATCH.min(rows - done);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(20);
        for i in 0..12 {
            let scale = 1.0 + i as f64;
            let v: Vec<Option<f64>> = (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    // Every third column log-normal, 1% missing in every column.
                    (rng.gen::<f64>() >= 0.01).then(|| if i % 3 == 0 { (scale + z).exp() } else { scale * z })
                })
                .collect();
            cols.push(Arc::new(Float64Array::from(v)));
        }
        let age: Vec<i64> = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                (40.0 + 12.0 * z).max(18.0) as i64
            })
            .collect();
        cols.push(Arc::new(Int64Array::from(age)));
        let visits: Vec<i64> = (0..n).map(|_| rng.gen_range(0..500)).collect();
        cols.push(Arc::new(Int64Array::from(visits)));
        let country: Vec<&str> = (0..n).map(|_| COUNTRIES[rng.gen_range(0..5)]).collect();
        cols.push(Arc::new(StringArray::from(country)));
        let device: Vec<&str> = (0..n).map(|_| DEVICES[rng.gen_range(0..3)]).collect();
        cols.push(Arc::new(StringArray::from(device)));
        let merchant: Vec<&str> = (0..n).map(|_| merchants[rng.gen_range(0..1000)].as_str()).collect();
        cols.push(Arc::new(StringArray::from(merchant)));
        let is_new: Vec<bool> = (0..n).map(|_| rng.gen::<f64>() < 0.2).collect();
        cols.push(Arc::new(BooleanArray::from(is_new)));
        let mut pred = Vec::with_capacity(n);
        let mut label = Vec::with_capacity(n);
        for _ in 0..n {
            let fraud = rng.gen::<f64>() < 0.1;
            let right = rng.gen::<f64>() < 0.9;
            pred.push(if fraud { "fraud" } else { "legit" });
            label.push(if right == fraud { "fraud" } else { "legit" });
        }
        cols.push(Arc::new(StringArray::from(pred)));
        cols.push(Arc::new(StringArray::from(label)));
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
        done += n;
    }
    w.close()?;
    eprintln!("wrote {rows} rows × 20 columns to {path}");
    Ok(())
}
