//! `Color`: which side of an upgrade a node, a route or a write belongs to.

use std::{fmt, str::FromStr};

use crate::v1;

/// One side of a blue/green upgrade: `Blue` is the old version, `Green` the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Color {
    /// The version being upgraded from.
    Blue,
    /// The version being upgraded to.
    Green,
}

impl Color {
    /// The other side.
    pub fn other(self) -> Self {
        match self {
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }

    /// The lower-case name, as used in flags, files, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A colour name or wire value that is neither blue nor green.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown colour {0:?}: expected \"blue\" or \"green\"")]
pub struct UnknownColor(pub String);

impl FromStr for Color {
    type Err = UnknownColor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Self::Blue),
            "green" => Ok(Self::Green),
            other => Err(UnknownColor(other.to_owned())),
        }
    }
}

impl From<Color> for v1::Color {
    fn from(color: Color) -> Self {
        match color {
            Color::Blue => v1::Color::Blue,
            Color::Green => v1::Color::Green,
        }
    }
}

impl TryFrom<i32> for Color {
    type Error = UnknownColor;

    /// Decodes the wire value of a `cutover.v1.Color` field; `COLOR_UNSPECIFIED` is refused.
    fn try_from(value: i32) -> Result<Self, Self::Error> {
        match v1::Color::try_from(value) {
            Ok(v1::Color::Blue) => Ok(Self::Blue),
            Ok(v1::Color::Green) => Ok(Self::Green),
            Ok(v1::Color::Unspecified) => Err(UnknownColor("COLOR_UNSPECIFIED".to_owned())),
            Err(_) => Err(UnknownColor(format!("wire value {value}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_names_and_wire_values() {
        for color in [Color::Blue, Color::Green] {
            assert_eq!(color.as_str().parse::<Color>(), Ok(color));
            assert_eq!(Color::try_from(v1::Color::from(color) as i32), Ok(color));
            assert_eq!(color.other().other(), color);
            assert_ne!(color.other(), color);
        }
    }

    #[test]
    fn refuses_unspecified_and_unknown_values() {
        assert!(Color::try_from(v1::Color::Unspecified as i32).is_err());
        assert!(Color::try_from(99).is_err());
        let err = "purple"
            .parse::<Color>()
            .expect_err("purple is not a colour");
        assert!(err.to_string().contains("purple"), "{err}");
    }
}
