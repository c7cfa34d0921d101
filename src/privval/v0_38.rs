//! CometBFT v0.38 privval messages (tendermint-proto `v0_38`), mapped to and
//! from the version-neutral form, vote extension fields included.

super::wire::tendermint_codec!(v0_38, extension, extension_signature);
