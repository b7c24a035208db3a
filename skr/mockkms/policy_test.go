package mockkms

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func claimsOf(t testing.TB, s string) map[string]any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEvalPolicy(t *testing.T) {
	claims := claimsOf(t, `{"iss":"https://maa.example","x-ms-sevsnpvm-hostdata":"abcd","x-ms-sevsnpvm-is-debuggable":false,
		"x-ms-sevsnpvm-vmpl":0,"x-ms-runtime":{"client":{"tag":"t1"}}}`)
	cases := []struct {
		policy string
		ok     bool
	}{
		{`{"version":"1.0.0","anyOf":[{"authority":"maa.example","allOf":[{"claim":"x-ms-sevsnpvm-hostdata","equals":"abcd"}]}]}`, true},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example/","allOf":[{"claim":"x-ms-sevsnpvm-is-debuggable","equals":"false"},{"claim":"x-ms-sevsnpvm-vmpl","equals":"0"}]}]}`, true},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"x-ms-sevsnpvm-is-debuggable","equals":false}]}]}`, true},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"x-ms-runtime.client.tag","equals":"t1"}]}]}`, true},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://other.example","allOf":[{"claim":"x-ms-sevsnpvm-hostdata","equals":"abcd"}]}]}`, false},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"x-ms-sevsnpvm-hostdata","equals":"ffff"}]}]}`, false},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","allOf":[{"claim":"missing","equals":"x"}]}]}`, false},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://maa.example","anyOf":[{"claim":"missing","equals":"x"},{"claim":"x-ms-sevsnpvm-vmpl","equals":"0"}]}]}`, true},
		{`{"version":"1.0.0","anyOf":[{"authority":"https://other.example","allOf":[{"claim":"x-ms-sevsnpvm-vmpl","equals":"0"}]},{"authority":"https://maa.example","allOf":[{"claim":"x-ms-sevsnpvm-vmpl","equals":"0"}]}]}`, true},
	}
	for _, c := range cases {
		var p releasePolicy
		if err := json.Unmarshal([]byte(c.policy), &p); err != nil {
			t.Fatal(err)
		}
		if err := checkPolicy(&p); err != nil {
			t.Fatalf("checkPolicy(%s): %v", c.policy, err)
		}
		err := evalPolicy(&p, "https://maa.example", claims)
		if (err == nil) != c.ok {
			t.Errorf("evalPolicy(%s) = %v, want ok=%v", c.policy, err, c.ok)
		}
	}
}

func FuzzPolicy(f *testing.F) {
	f.Add([]byte(`{"version":"1.0.0","anyOf":[{"authority":"maa.example","allOf":[{"claim":"a.b","equals":"x"}]}]}`), []byte(`{"a":{"b":"x"}}`))
	f.Fuzz(func(t *testing.T, pol, claims []byte) {
		var p releasePolicy
		if json.Unmarshal(pol, &p) != nil || checkPolicy(&p) != nil {
			return
		}
		d := json.NewDecoder(bytes.NewReader(claims))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) != nil {
			return
		}
		evalPolicy(&p, "https://maa.example", m)
	})
}
