//! Repeated service boilerplate, written once.

/// `get_ref`, `get_mut` and `into_inner` for a service with an `inner` field.
macro_rules! service_accessors {
    ($name:ident < $inner:ident $(, $param:ident)* >) => {
        impl<$inner $(, $param)*> $name<$inner $(, $param)*> {
            /// The wrapped service.
            pub fn get_ref(&self) -> &$inner {
                &self.inner
            }

            /// The wrapped service, mutably.
            pub fn get_mut(&mut self) -> &mut $inner {
                &mut self.inner
            }

            /// Unwraps the service.
            pub fn into_inner(self) -> $inner {
                self.inner
            }
        }
    };
}

pub(crate) use service_accessors;
