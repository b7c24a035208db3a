package mockkms

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// checkPolicy validates the shape of a release policy at import time.
func checkPolicy(p *releasePolicy) error {
	if p.Version == "" {
		return errors.New("release policy has no version")
	}
	if len(p.AnyOf) == 0 && len(p.AllOf) == 0 {
		return errors.New("release policy has neither anyOf nor allOf")
	}
	for _, r := range append(append([]releaseRule{}, p.AnyOf...), p.AllOf...) {
		if r.Authority == "" {
			return errors.New("release policy: every top-level rule needs an authority")
		}
		if err := checkRule(r, 0); err != nil {
			return err
		}
	}
	return nil
}

func checkRule(r releaseRule, depth int) error {
	if depth > 16 {
		return errors.New("release policy nests too deeply")
	}
	isCond := r.Claim != ""
	isBranch := len(r.AnyOf) > 0 || len(r.AllOf) > 0
	if isCond == isBranch {
		return errors.New("release policy: a rule is either a claim condition or an anyOf/allOf branch")
	}
	if isCond && r.Equals == nil {
		return fmt.Errorf("release policy: claim %q has no \"equals\"", r.Claim)
	}
	for _, c := range append(append([]releaseRule{}, r.AnyOf...), r.AllOf...) {
		if err := checkRule(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// evalPolicy decides a release: nil if claims from issuer satisfy p.
func evalPolicy(p *releasePolicy, issuer string, claims map[string]any) error {
	top := releaseRule{AnyOf: p.AnyOf, AllOf: p.AllOf}
	return evalRule(top, issuer, claims, 0)
}

func evalRule(r releaseRule, issuer string, claims map[string]any, depth int) error {
	if depth > 16 {
		return errors.New("policy nests too deeply")
	}
	if r.Authority != "" && authorityHost(r.Authority) != authorityHost(issuer) {
		return fmt.Errorf("token issuer %s is not the policy authority %s", issuer, r.Authority)
	}
	if r.Claim != "" {
		got, ok := lookupClaim(claims, r.Claim)
		want := claimString(r.Equals)
		if !ok {
			return fmt.Errorf("claim %s is missing, policy requires %q", r.Claim, want)
		}
		if got != want {
			return fmt.Errorf("claim %s is %q, policy requires %q", r.Claim, got, want)
		}
		return nil
	}
	for _, c := range r.AllOf {
		if err := evalRule(c, issuer, claims, depth+1); err != nil {
			return err
		}
	}
	if len(r.AnyOf) > 0 {
		var msgs []string
		for _, c := range r.AnyOf {
			err := evalRule(c, issuer, claims, depth+1)
			if err == nil {
				return nil
			}
			msgs = append(msgs, err.Error())
		}
		return errors.New(strings.Join(msgs, "; or "))
	}
	return nil
}

// lookupClaim finds name as a top-level claim, else follows its dots into
// nested objects.
func lookupClaim(claims map[string]any, name string) (string, bool) {
	if v, ok := claims[name]; ok {
		return claimString(v), v != nil
	}
	var cur any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[part]; !ok {
			return "", false
		}
	}
	return claimString(cur), cur != nil
}

// claimString compares booleans and numbers as strings, as Key Vault does.
func claimString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// authorityHost is the lowercase host[:port] of an authority written as
// "host", "https://host/" or "https://host:443".
func authorityHost(a string) string {
	a = strings.TrimSpace(a)
	if !strings.Contains(a, "://") {
		a = "https://" + a
	}
	u, err := url.Parse(a)
	if err != nil || u.Host == "" {
		return "\x00invalid:" + a
	}
	h := strings.ToLower(u.Host)
	return strings.TrimSuffix(h, ":443")
}
