//! The local time of a place, found offline: tzf-rs maps a position to an IANA
//! time zone name, chrono-tz gives that zone's offset at an instant. Never
//! consults the machine's own zone. Pure: bundled data only, no I/O.

use chrono::{DateTime, FixedOffset, Offset, Utc};
use chrono_tz::Tz;

use crate::model::LonLat;

/// The time zone finder. Build it once and share it between threads: it
/// queries the bundled boundary data in place, so it is cheap to build.
pub(crate) struct TimeZones {
    finder: tzf_rs::EmbeddedFinder,
}

impl std::fmt::Debug for TimeZones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeZones").finish_non_exhaustive()
    }
}

impl Default for TimeZones {
    fn default() -> Self {
        Self::new()
    }
}

/// A capture time in the local time of the place where it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalTime {
    /// The IANA zone name, e.g. `Europe/Berlin`, or `Etc/GMT-3` for a
    /// nautical zone at sea.
    pub zone: String,
    /// The same instant with the zone's offset at that instant.
    pub time: DateTime<FixedOffset>,
}

impl TimeZones {
    pub(crate) fn new() -> Self {
        Self {
            finder: tzf_rs::EmbeddedFinder::new(),
        }
    }

    /// The local time at `at` of the instant `t`. Outside every land zone
    /// (at sea) the nautical zone of the longitude is used (15° wide,
    /// `Etc/GMT±N`).
    pub(crate) fn local_time(&self, at: LonLat, t: DateTime<Utc>) -> LocalTime {
        let name = self.finder.get_tz_name(at.lon, at.lat);
        if let Ok(tz) = name.parse::<Tz>() {
            return LocalTime {
                zone: name.to_string(),
                time: t.with_timezone(&tz).fixed_offset(),
            };
        }
        let hours = (at.lon / 15.0).round().clamp(-12.0, 12.0) as i32;
        // POSIX-style names: `Etc/GMT-3` is three hours *ahead* of UTC.
        let zone = match hours {
            0 => "Etc/GMT".to_string(),
            h if h > 0 => format!("Etc/GMT-{h}"),
            h => format!("Etc/GMT+{}", -h),
        };
        let offset = FixedOffset::east_opt(hours * 3600).unwrap_or(Utc.fix());
        LocalTime {
            zone,
            time: t.with_timezone(&offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lon: f64, lat: f64, rfc3339: &str) -> LocalTime {
        let t = DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc);
        TimeZones::new().local_time(LonLat::new(lon, lat).unwrap(), t)
    }

    #[test]
    fn summer_and_winter_time_of_the_place() {
        let berlin_summer = at(13.4, 52.52, "2021-07-01T10:00:00Z");
        assert_eq!(berlin_summer.zone, "Europe/Berlin");
        assert_eq!(berlin_summer.time.to_rfc3339(), "2021-07-01T12:00:00+02:00");
        let berlin_winter = at(13.4, 52.52, "2021-01-01T10:00:00Z");
        assert_eq!(berlin_winter.time.to_rfc3339(), "2021-01-01T11:00:00+01:00");
        let ny = at(-73.98, 40.75, "2021-07-01T10:00:00Z");
        assert_eq!(ny.zone, "America/New_York");
        assert_eq!(ny.time.to_rfc3339(), "2021-07-01T06:00:00-04:00");
        let sydney = at(151.2, -33.87, "2021-07-01T10:00:00Z");
        assert_eq!(sydney.time.to_rfc3339(), "2021-07-01T20:00:00+10:00");
        let kathmandu = at(85.32, 27.7, "2021-07-01T10:00:00Z");
        assert_eq!(kathmandu.time.to_rfc3339(), "2021-07-01T15:45:00+05:45");
    }

    #[test]
    fn sea_and_null_island_get_a_nautical_zone() {
        let null = at(0.0, 0.0, "2021-07-01T10:00:00Z");
        assert_eq!(null.time.offset().local_minus_utc(), 0, "{null:?}");
        let pacific = at(-150.0, 0.0, "2021-07-01T10:00:00Z");
        assert_eq!(
            pacific.time.offset().local_minus_utc(),
            -10 * 3600,
            "{pacific:?}"
        );
    }
}
