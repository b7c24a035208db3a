package skr

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ImportConfig is Microsoft's importkeyconfig.json (tools/importkey of the
// confidential sidecar): the key blob, the key derivation for RSA-HSM keys,
// the release policy as lists of claims (each list one allOf, the lists
// anyOf), and the identity for the vault token.
type ImportConfig struct {
	Key           KeyBlob        `json:"key"`
	KeyDerivation *KeyDerivation `json:"key_derivation,omitempty"`
	Claims        [][]PolicyRule `json:"claims"`
	Identity      *Identity      `json:"identity,omitempty"`
}

// ParseImportConfig decodes importkeyconfig.json and checks it, naming any
// "<...>" placeholder left from Microsoft's example.
func ParseImportConfig(data []byte) (*ImportConfig, error) {
	if len(data) > maxKeyBlob {
		return nil, fmt.Errorf("skr: import config larger than %d bytes", maxKeyBlob)
	}
	var c ImportConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("skr: import config: %w", err)
	}
	if c.Key.KeyDerivation == nil {
		c.Key.KeyDerivation = c.KeyDerivation
	}
	if c.Key.Identity == nil {
		c.Key.Identity = c.Identity
	}
	if err := c.Key.Validate(); err != nil {
		return nil, err
	}
	if len(c.Claims) == 0 {
		return nil, errors.New("skr: import config: no claims: the release policy would admit nobody")
	}
	for i, all := range c.Claims {
		if len(all) == 0 {
			return nil, fmt.Errorf("skr: import config: claims[%d] is empty", i)
		}
		for _, r := range all {
			if r.Claim == "" {
				return nil, fmt.Errorf("skr: import config: claims[%d]: a condition without \"claim\"", i)
			}
			if v, ok := r.Equals.(string); ok && placeholderRE.MatchString(v) {
				return nil, fmt.Errorf("skr: import config: claim %s is still the placeholder %s from Microsoft's example: fill it in", r.Claim, strings.TrimSpace(v))
			}
		}
	}
	return &c, nil
}

// Policy is the release policy the config describes, as Microsoft's tool
// builds it: one anyOf branch per claims list, each naming the key blob's
// authority.
func (c *ImportConfig) Policy() ([]byte, error) {
	auth, err := NormalizeEndpoint(c.Key.Authority.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("skr: import config: authority: %w", err)
	}
	p := Policy{Version: "1.0.0"}
	for _, all := range c.Claims {
		p.AnyOf = append(p.AnyOf, PolicyRule{Authority: auth, AllOf: all})
	}
	return json.MarshalIndent(p, "", "  ")
}
