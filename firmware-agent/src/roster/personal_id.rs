//! The national personal ID (mã định danh cá nhân) that names every pupil and
//! teacher in the provincial and national education databases.

use std::fmt;
use std::str::FromStr;

/// A checked 12-digit personal ID: the first three digits are a province code, 001 to 096.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PersonalId(String);

/// Why a string is not a personal ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonalIdError {
    #[error("`{0}` has {1} characters; a personal ID has exactly 12 digits")]
    Length(String, usize),
    #[error("`{0}` contains something other than digits")]
    NotDigits(String),
    #[error("`{0}` starts with province code {1}, outside 001 to 096")]
    Province(String, String),
}

impl FromStr for PersonalId {
    type Err = PersonalIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PersonalIdError::NotDigits(text.to_owned()));
        }
        if text.len() != 12 {
            return Err(PersonalIdError::Length(
                text.to_owned(),
                text.chars().count(),
            ));
        }
        let province: u16 = text[..3].parse().expect("three ASCII digits");
        if !(1..=96).contains(&province) {
            return Err(PersonalIdError::Province(
                text.to_owned(),
                text[..3].to_owned(),
            ));
        }
        Ok(PersonalId(text.to_owned()))
    }
}

impl TryFrom<String> for PersonalId {
    type Error = PersonalIdError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<PersonalId> for String {
    fn from(id: PersonalId) -> String {
        id.0
    }
}

impl PersonalId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids_and_explains_bad_ones() {
        assert_eq!(
            "010206001234".parse::<PersonalId>().unwrap().as_str(),
            "010206001234"
        );
        assert_eq!(
            "096306001234".parse::<PersonalId>().unwrap().as_str(),
            "096306001234"
        );
        assert!(matches!(
            "01020600123".parse::<PersonalId>(),
            Err(PersonalIdError::Length(_, 11))
        ));
        assert!(matches!(
            "01020600123a".parse::<PersonalId>(),
            Err(PersonalIdError::NotDigits(_))
        ));
        assert!(
            matches!("000206001234".parse::<PersonalId>(), Err(PersonalIdError::Province(_, p)) if p == "000")
        );
        assert!(
            matches!("097206001234".parse::<PersonalId>(), Err(PersonalIdError::Province(_, p)) if p == "097")
        );
    }
}
