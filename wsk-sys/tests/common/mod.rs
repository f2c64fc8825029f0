//! Layout assertion helpers shared by the layout tests.

/// Size and alignment of two types agree.
#[macro_export]
macro_rules! same_size_align {
    ($ours:ty, $theirs:ty) => {{
        assert_eq!(
            core::mem::size_of::<$ours>(),
            core::mem::size_of::<$theirs>(),
            "size_of::<{}>() differs from windows-sys",
            stringify!($ours)
        );
        assert_eq!(
            core::mem::align_of::<$ours>(),
            core::mem::align_of::<$theirs>(),
            "align_of::<{}>() differs from windows-sys",
            stringify!($ours)
        );
    }};
}

/// Fields with the same name sit at the same offset in both types.
#[macro_export]
macro_rules! same_offsets {
    ($ours:ty, $theirs:ty, [$($f:ident),* $(,)?]) => {{
        $(
            assert_eq!(
                core::mem::offset_of!($ours, $f),
                core::mem::offset_of!($theirs, $f),
                "offset of {}.{} differs from windows-sys",
                stringify!($ours),
                stringify!($f)
            );
        )*
    }};
}

/// A (possibly nested) field of ours sits where the named field of theirs does.
#[macro_export]
macro_rules! same_offset {
    ($ours:ty, $($a:ident).+ ; $theirs:ty, $($b:ident).+) => {{
        assert_eq!(
            core::mem::offset_of!($ours, $($a).+),
            core::mem::offset_of!($theirs, $($b).+),
            "offset of {}.{} differs from windows-sys {}",
            stringify!($ours),
            stringify!($($a).+),
            stringify!($($b).+)
        );
    }};
}

/// Size, alignment and every listed field offset against hand-derived values.
#[macro_export]
macro_rules! hand_layout {
    ($ours:ty, size $size:expr, align $align:expr, { $($($f:ident).+ = $off:expr),* $(,)? }) => {{
        assert_eq!(core::mem::size_of::<$ours>(), $size, "size_of::<{}>()", stringify!($ours));
        assert_eq!(core::mem::align_of::<$ours>(), $align, "align_of::<{}>()", stringify!($ours));
        $(
            assert_eq!(
                core::mem::offset_of!($ours, $($f).+),
                $off,
                "offset of {}.{}",
                stringify!($ours),
                stringify!($($f).+)
            );
        )*
    }};
}
