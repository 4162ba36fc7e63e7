package auth

// Checks for a config adapter, which reports errors at the config's line
// where provisioning the Verifier could only name the setting.

// CheckPEM reports whether a PEM document holds public keys the verifier
// takes (no private key, a supported type, RSA of 2048 bits or more).
func CheckPEM(data []byte) error {
	_, err := parsePEMKeys(data, "")
	return err
}

// CheckJWKS reports whether a JWK Set document yields a usable key.
func CheckJWKS(data []byte) error {
	_, _, err := parseJWKS(data, "")
	return err
}

// CheckAlgorithms reports an algorithm in explicit that no configured key
// can verify: hmac reports an HMAC secret, pems are the public_key
// documents, and jwks that a JWK Set (whose keys are not known before it is
// fetched) is configured.
func CheckAlgorithms(explicit []string, hmac bool, pems [][]byte, jwks bool) error {
	var keys []*key
	if hmac {
		keys = append(keys, &key{kind: kindHMAC})
	}
	for _, p := range pems {
		ks, err := parsePEMKeys(p, "")
		if err != nil {
			return err
		}
		keys = append(keys, ks...)
	}
	_, err := chooseAlgorithms(explicit, keys, jwks)
	return err
}
