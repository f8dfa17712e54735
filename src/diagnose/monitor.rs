//! What a method's [`Signal`]s say, measured: a tokenizer's codebook usage, a self-distillation
//! teacher's entropies. The training log, `diagnose`, the report and the command line read these
//! [`Readings`] without knowing which method made them.

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codebook::CodebookUsage;
use super::distillation::{DistillationStats, DistillationVerdict, analyze};
use crate::method::Signal;

/// One measured signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    Codebook(CodebookUsage),
    Distillation(DistillationStats),
}

impl Reading {
    /// Its key in JSON (`metrics.jsonl`, `diagnose.json`).
    pub fn key(&self) -> &'static str {
        match self {
            Reading::Codebook(_) => "codebook",
            Reading::Distillation(_) => "distillation",
        }
    }

    /// What it is about, for tables and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Reading::Codebook(_) => "codebook",
            Reading::Distillation(_) => "teacher",
        }
    }

    /// One line: what was measured.
    pub fn describe(&self) -> String {
        match self {
            Reading::Codebook(c) => c.describe(),
            Reading::Distillation(d) => d.describe(),
        }
    }

    /// What the verdict means, when there is more to say.
    pub fn explain(&self) -> Option<&'static str> {
        match self {
            Reading::Codebook(_) => None,
            Reading::Distillation(d) => Some(d.verdict.explain()),
        }
    }

    /// Whether it shows collapse.
    pub fn collapsed(&self) -> bool {
        match self {
            Reading::Codebook(c) => c.collapsed,
            Reading::Distillation(d) => d.verdict != DistillationVerdict::Healthy,
        }
    }
}

/// The readings of one step or one diagnosis, serialised as `{"codebook": …, "distillation": …}`
/// (only those present), to sit flattened beside other fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readings(pub Vec<Reading>);

impl Readings {
    /// Measures the signals of one batch.
    pub fn of(signals: Vec<Signal>) -> Readings {
        let mut gathered = Gathered::default();
        gathered.add(signals);
        gathered.readings()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Reading> {
        self.0.iter()
    }
}

/// Signals of several batches gathered on the host, measured together.
#[derive(Default)]
pub struct Gathered {
    codes: Option<(Vec<i64>, usize)>,
    /// Teacher and student rows, and the number of prototypes.
    distributions: Option<(Vec<f32>, Vec<f32>, usize)>,
}

impl Gathered {
    pub fn add(&mut self, signals: Vec<Signal>) {
        for signal in signals {
            match signal {
                Signal::Codes(c) => {
                    let (ids, size) = self.codes.get_or_insert((Vec::new(), c.size));
                    *size = c.size;
                    ids.extend(crate::host::to_i64(c.ids));
                }
                Signal::Distributions(d) => {
                    let k = d.teacher.dims()[1];
                    let (teacher, student, prototypes) =
                        self.distributions
                            .get_or_insert((Vec::new(), Vec::new(), k));
                    *prototypes = k;
                    teacher.extend(crate::host::to_f32(d.teacher));
                    student.extend(crate::host::to_f32(d.student));
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_none() && self.distributions.is_none()
    }

    pub fn readings(self) -> Readings {
        let mut readings = Vec::new();
        if let Some((ids, size)) = self.codes {
            readings.push(Reading::Codebook(CodebookUsage::of(&ids, size)));
        }
        if let Some((teacher, student, k)) = self.distributions {
            let n = teacher.len() / k.max(1);
            readings.push(Reading::Distillation(analyze(&teacher, &student, n, k)));
        }
        Readings(readings)
    }
}

impl Serialize for Readings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for reading in &self.0 {
            match reading {
                Reading::Codebook(c) => map.serialize_entry(reading.key(), c)?,
                Reading::Distillation(d) => map.serialize_entry(reading.key(), d)?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Readings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReadingsVisitor;
        impl<'de> Visitor<'de> for ReadingsVisitor {
            type Value = Readings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of readings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Readings, A::Error> {
                let mut readings = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "codebook" => readings.push(Reading::Codebook(map.next_value()?)),
                        "distillation" => readings.push(Reading::Distillation(map.next_value()?)),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Readings(readings))
            }
        }
        deserializer.deserialize_map(ReadingsVisitor)
    }
}
