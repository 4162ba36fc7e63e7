package auth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestCredential(t *testing.T) {
	long := strings.Repeat("a", MaxCredentialSize)
	tests := []struct {
		name    string
		header  http.Header
		want    string
		wantErr error
	}{
		{"bearer", http.Header{"Authorization": {"Bearer abc.def.ghi"}}, "abc.def.ghi", nil},
		{"lowercase scheme", http.Header{"Authorization": {"bearer sk-xyz"}}, "sk-xyz", nil},
		{"uppercase scheme", http.Header{"Authorization": {"BEARER sk-xyz"}}, "sk-xyz", nil},
		{"surrounding spaces", http.Header{"Authorization": {"  Bearer   tok  "}}, "tok", nil},
		{"tab separator", http.Header{"Authorization": {"Bearer\ttok"}}, "tok", nil},
		{"x-api-key", http.Header{"X-Api-Key": {"sk-abc"}}, "sk-abc", nil},
		{"x-api-key trimmed", http.Header{"X-Api-Key": {" sk-abc\t"}}, "sk-abc", nil},
		{"both equal", http.Header{"Authorization": {"Bearer sk-a"}, "X-Api-Key": {"sk-a"}}, "sk-a", nil},
		{"max size", http.Header{"Authorization": {"Bearer " + long}}, long, nil},

		{"none", http.Header{}, "", ErrNoCredential},
		{"other headers only", http.Header{"Cookie": {"a=b"}}, "", ErrNoCredential},
		{"basic", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, "", ErrInvalid},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, "", ErrInvalid},
		{"scheme and spaces", http.Header{"Authorization": {"Bearer    "}}, "", ErrInvalid},
		{"empty authorization", http.Header{"Authorization": {""}}, "", ErrInvalid},
		{"bare token", http.Header{"Authorization": {"sk-abc"}}, "", ErrInvalid},
		{"bearer prefix word", http.Header{"Authorization": {"Bearerx tok"}}, "", ErrInvalid},
		{"inner space", http.Header{"Authorization": {"Bearer a b"}}, "", ErrInvalid},
		{"control char", http.Header{"Authorization": {"Bearer a\x00b"}}, "", ErrInvalid},
		{"newline", http.Header{"X-Api-Key": {"sk-a\nb"}}, "", ErrInvalid},
		{"DEL", http.Header{"X-Api-Key": {"sk-a\x7fb"}}, "", ErrInvalid},
		{"non-ascii", http.Header{"X-Api-Key": {"sk-é"}}, "", ErrInvalid},
		{"too large", http.Header{"Authorization": {"Bearer " + long + "a"}}, "", ErrInvalid},
		{"empty x-api-key", http.Header{"X-Api-Key": {"  "}}, "", ErrInvalid},
		{"two authorization", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", ErrInvalid},
		{"two x-api-key", http.Header{"X-Api-Key": {"a", "b"}}, "", ErrInvalid},
		{"conflict", http.Header{"Authorization": {"Bearer sk-a"}, "X-Api-Key": {"sk-b"}}, "", ErrInvalid},
		{"bad auth with key", http.Header{"Authorization": {"Basic x"}, "X-Api-Key": {"sk-b"}}, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Credential(tt.header)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Credential() error = %v, want %v", err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("Credential() returned %q with an error", got)
				}
				if errors.Is(tt.wantErr, ErrInvalid) && errors.Is(err, ErrNoCredential) {
					t.Errorf("malformed header reported as missing: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Credential() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("Credential() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCredentialErrorsOmitToken checks that error messages never echo the
// credential, which would leak it into logs.
func TestCredentialErrorsOmitToken(t *testing.T) {
	secret := "sk-SuperSecretValue123"
	for _, h := range []http.Header{
		{"Authorization": {"Basic " + secret}},
		{"Authorization": {"Bearer " + secret + " x"}},
		{"Authorization": {"Bearer " + secret}, "X-Api-Key": {"sk-other"}},
		{"X-Api-Key": {secret + "\x01"}},
	} {
		_, err := Credential(h)
		if err == nil {
			t.Fatalf("Credential(%v) succeeded", h)
		}
		if strings.Contains(err.Error(), "SuperSecret") {
			t.Errorf("error %q contains the credential", err)
		}
	}
}

// TestCredentialHeaderSet checks that a header set with a lowercase name
// (canonicalized by http.Header.Set) is found.
func TestCredentialHeaderSet(t *testing.T) {
	h := http.Header{}
	h.Set("x-api-key", "sk-abc")
	if got, err := Credential(h); err != nil || got != "sk-abc" {
		t.Fatalf("Credential() = %q, %v", got, err)
	}
}

func TestCredentialAllocs(t *testing.T) {
	h := http.Header{"Authorization": {"Bearer abc.def.ghi"}}
	if n := testing.AllocsPerRun(100, func() { _, _ = Credential(h) }); n != 0 {
		t.Errorf("Credential allocates %v times per call, want 0", n)
	}
}

func FuzzCredential(f *testing.F) {
	f.Add("Bearer abc.def.ghi", "")
	f.Add("bearer  sk-x ", "sk-x")
	f.Add("", "sk-abc")
	f.Add("Basic Zm9vOmJhcg==", "")
	f.Add("Bearer\t\x00", "\x7f")
	f.Add("BEARER é", " ")
	f.Fuzz(func(t *testing.T, auth, apiKey string) {
		h := http.Header{}
		if auth != "" {
			h["Authorization"] = []string{auth}
		}
		if apiKey != "" {
			h["X-Api-Key"] = []string{apiKey}
		}
		tok, err := Credential(h)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNoCredential) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if tok != "" {
				t.Fatalf("token %q returned with error", tok)
			}
			if errors.Is(err, ErrNoCredential) && (auth != "" || apiKey != "") {
				t.Fatalf("ErrNoCredential with headers present")
			}
			return
		}
		if tok == "" || len(tok) > MaxCredentialSize {
			t.Fatalf("bad token length %d", len(tok))
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("token contains byte %#x", c)
			}
		}
		if !strings.Contains(auth, tok) && !strings.Contains(apiKey, tok) {
			t.Fatalf("token %q is not from the headers", tok)
		}
		if auth != "" && !strings.HasSuffix(strings.Trim(auth, " \t"), tok) {
			t.Fatalf("token %q is not the end of Authorization %q", tok, auth)
		}
	})
}
