//! Neutron ids as types of their own, so that a port's id is never passed where a
//! network's is wanted. Each reads and prints as the plain string Neutron uses
//! (`serde(transparent)`) and borrows as `&str` for the client's paths and filters.

macro_rules! neutron_id {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $t(pub String);

        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $t(s)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.to_string())
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0
            }
        }
        impl From<&$t> for String {
            fn from(id: &$t) -> String {
                id.0.clone()
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }
        impl PartialEq<String> for $t {
            fn eq(&self, o: &String) -> bool {
                &self.0 == o
            }
        }
        impl PartialEq<$t> for String {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }
        impl PartialEq<$t> for str {
            fn eq(&self, o: &$t) -> bool {
                self == o.0
            }
        }
        impl PartialEq<$t> for &str {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }
    };
}

neutron_id!(
    /// A Neutron network's id.
    NetworkId
);
neutron_id!(
    /// A Neutron subnet's id.
    SubnetId
);
neutron_id!(
    /// A Neutron subnetpool's id.
    SubnetPoolId
);
neutron_id!(
    /// A Neutron port's id.
    PortId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_and_print_as_neutrons_plain_strings() {
        let id: PortId = serde_json::from_str("\"3c6ef372-0002-4000-8000-000000000002\"").unwrap();
        assert_eq!(id, "3c6ef372-0002-4000-8000-000000000002");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"3c6ef372-0002-4000-8000-000000000002\""
        );
        let net = NetworkId::from("n1");
        assert_eq!(format!("{net}"), "n1");
        assert_eq!(String::from(&net), "n1");
    }
}
