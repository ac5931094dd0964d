//! The `.avsc` files of `schemas/`, embedded in the binary, and the link from each Rust type to
//! its schema. The files are the contract; the Rust types follow them (checked by the
//! `schema_agreement` tests).

use std::sync::OnceLock;

use apache_avro::Schema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One value schema file of `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaFile {
    ScanCommand,
    ScanEvent,
    Finding,
    JobState,
    Schedule,
    ScheduleTicks,
    Sighting,
    TriageDecision,
    InventoryItem,
}

impl SchemaFile {
    pub const ALL: [SchemaFile; 9] = [
        SchemaFile::ScanCommand,
        SchemaFile::ScanEvent,
        SchemaFile::Finding,
        SchemaFile::JobState,
        SchemaFile::Schedule,
        SchemaFile::ScheduleTicks,
        SchemaFile::Sighting,
        SchemaFile::TriageDecision,
        SchemaFile::InventoryItem,
    ];

    /// File name under `schemas/`.
    pub const fn file_name(self) -> &'static str {
        match self {
            SchemaFile::ScanCommand => "ScanCommand.avsc",
            SchemaFile::ScanEvent => "ScanEvent.avsc",
            SchemaFile::Finding => "Finding.avsc",
            SchemaFile::JobState => "JobState.avsc",
            SchemaFile::Schedule => "Schedule.avsc",
            SchemaFile::ScheduleTicks => "ScheduleTicks.avsc",
            SchemaFile::Sighting => "Sighting.avsc",
            SchemaFile::TriageDecision => "TriageDecision.avsc",
            SchemaFile::InventoryItem => "InventoryItem.avsc",
        }
    }

    /// The schema text exactly as committed.
    pub const fn source(self) -> &'static str {
        match self {
            SchemaFile::ScanCommand => include_str!("../../../schemas/ScanCommand.avsc"),
            SchemaFile::ScanEvent => include_str!("../../../schemas/ScanEvent.avsc"),
            SchemaFile::Finding => include_str!("../../../schemas/Finding.avsc"),
            SchemaFile::JobState => include_str!("../../../schemas/JobState.avsc"),
            SchemaFile::Schedule => include_str!("../../../schemas/Schedule.avsc"),
            SchemaFile::ScheduleTicks => include_str!("../../../schemas/ScheduleTicks.avsc"),
            SchemaFile::Sighting => include_str!("../../../schemas/Sighting.avsc"),
            SchemaFile::TriageDecision => include_str!("../../../schemas/TriageDecision.avsc"),
            SchemaFile::InventoryItem => include_str!("../../../schemas/InventoryItem.avsc"),
        }
    }

    /// The parsed schema, parsed once per process.
    pub fn parsed(self) -> Result<&'static Schema, apache_avro::Error> {
        static CELLS: [OnceLock<Schema>; 9] = [const { OnceLock::new() }; 9];
        let cell = &CELLS[self as usize];
        if let Some(schema) = cell.get() {
            return Ok(schema);
        }
        let schema = Schema::parse_str(self.source())?;
        Ok(cell.get_or_init(|| schema))
    }
}

/// A Rust type that is the value of one scanstream topic.
pub trait AvroRecord: Serialize + DeserializeOwned {
    const SCHEMA: SchemaFile;
}
