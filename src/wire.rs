//! String-valued enums on the wire (Neutron's `binding:vif_type`, a port's `status`):
//! parsed once, compared and printed as Neutron says them. Shared by the Neutron client
//! and the base types below it.

/// A JSON field that may be absent or null, read as its type's default (Neutron's and
/// netavark's objects both send null for "none").
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// Display, `== "text"`, and serde as the plain string (null reads as "").
macro_rules! wire_string {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <Option<String> as serde::Deserialize>::deserialize(d)?.unwrap_or_default();
                Ok(<$t>::from(s.as_str()))
            }
        }
    };
}
pub(crate) use wire_string;
