package itest

import (
	"testing"

	"github.com/llmgate/llmgate/internal/testcaddy"
)

func TestMain(m *testing.M) { testcaddy.Main(m) }
