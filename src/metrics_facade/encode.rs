//! The scrape side of the facade: its families, encoded by `prometheus-client` in every
//! format the exporter serves.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, MetricEncoder, NoLabelSet,
};

use super::names::OVERFLOW_LABEL;
use super::{Cell, Shared, read};

/// The facade's families, registered in the registry as one collector.
pub(super) struct Published(pub(super) Arc<Shared>);

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Published").finish_non_exhaustive()
    }
}

/// The labels of a series, valid and sorted when it was created.
struct Labels<'a>(&'a [(Arc<str>, Arc<str>)]);

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, value) in self.0 {
            (&**name, &**value).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// The labels of the series beyond the cap.
struct Overflow;

impl EncodeLabelSet for Overflow {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        (OVERFLOW_LABEL, "true").encode(encoder.encode_label())
    }
}

impl Cell {
    /// Encodes the value, times `scale` (to the base unit; 1 without a unit).
    fn encode(&self, encoder: &mut MetricEncoder<'_>, scale: f64) -> Result<(), std::fmt::Error> {
        match self {
            // One load: a counter read by a scrape is never torn, nor lower than the
            // one read by the scrape before.
            Cell::Counter(counter) => {
                let value = counter.0.load(std::sync::atomic::Ordering::Relaxed);
                if scale == 1.0 {
                    encoder.encode_counter::<NoLabelSet, u64, u64>(&value, None)
                } else {
                    encoder.encode_counter::<NoLabelSet, f64, f64>(&(value as f64 * scale), None)
                }
            }
            Cell::Gauge(gauge) => encoder.encode_gauge(&(gauge.value() * scale)),
            // Scaled when recorded.
            Cell::Histogram(histogram) => histogram.core.encode(encoder),
        }
    }
}

impl Collector for Published {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A family is published once it exists; its series list grows under a write
        // lock held only while a new label set is pushed.
        let families = read(&self.0.published).clone();
        for family in &families {
            let series = read(&family.series);
            let overflow = family.overflow.get();
            if series.is_empty() && overflow.is_none() {
                continue;
            }
            let descriptions = read(&self.0.descriptions);
            let help = descriptions[family.kind.slot()]
                .get(&family.described_as)
                .map_or(family.undescribed.as_str(), |d| d.help.as_str());
            let mut encoder = encoder.encode_descriptor(
                &family.name,
                help,
                family.unit.as_ref(),
                family.kind.metric_type(),
            )?;
            for (labels, cell) in series.iter() {
                cell.encode(&mut encoder.encode_family(&Labels(labels))?, family.scale)?;
            }
            if let Some(cell) = overflow {
                cell.encode(&mut encoder.encode_family(&Overflow)?, family.scale)?;
            }
        }
        Ok(())
    }
}
