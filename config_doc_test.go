package etcdebpfreceiver

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configDoc is the page whose Fields table users read the configuration from.
var configDoc = filepath.Join("docs", "configuration.md")

// TestConfigurationDocListsEveryFieldWithItsDefault keeps configuration.md's
// Fields table and the Config struct from drifting apart: every key the
// collector accepts has a row, every row is a key it accepts, and each row's
// default is createDefaultConfig's.
func TestConfigurationDocListsEveryFieldWithItsDefault(t *testing.T) {
	doc, err := os.ReadFile(configDoc)
	require.NoError(t, err)
	for _, problem := range configDocProblems(doc, createDefaultConfig()) {
		t.Errorf("%s: %s", configDoc, problem)
	}
}

// The checker finds each kind of drift, so that a clean run above means the
// page is right rather than that nothing was compared.
func TestConfigDocProblemsFindsDrift(t *testing.T) {
	type nested struct {
		Rate int `mapstructure:"rate"`
	}
	type config struct {
		Name     string        `mapstructure:"name"`
		Interval time.Duration `mapstructure:"interval"`
		Limits   nested        `mapstructure:"limits"`
		Off      time.Duration `mapstructure:"off"`
		List     []string      `mapstructure:"list"`
		Missing  bool          `mapstructure:"missing"`
		_        struct{}
	}
	cfg := &config{Name: "etcd", Interval: 10 * time.Second, Limits: nested{Rate: 5}}
	doc := []byte("# Configuration\n\n| Field | Default |\n| --- | --- |\n| `unrelated` | `1` |\n\n" +
		"## Fields\n\nIntro.\n\n" +
		"| Field | Default | Valid values | Meaning |\n| --- | --- | --- | --- |\n" +
		"| `name` | `etcd` | any | ok |\n" +
		"| `interval` | `1m` | any | wrong default |\n" +
		"| `limits.rate` | `5` | any | ok, nested |\n" +
		"| `off` | `0` | any | ok: 0 is a duration |\n" +
		"| `list` | all | any | ok: prose for an empty default |\n" +
		"| `gone` | none | any | not in the struct |\n\n" +
		"Text after the table.\n")

	problems := configDocProblems(doc, cfg)
	assert.ElementsMatch(t, []string{
		"`interval`: the table's default is `1m`, createDefaultConfig's is 10s",
		"`missing`: the struct has it, the Fields table has no row for it",
		"`gone`: the Fields table documents it, the struct has no such key",
	}, problems)

	cfg.List = []string{"write"}
	assert.Contains(t, configDocProblems(doc, cfg),
		"`list`: the table's default is \"all\", but createDefaultConfig sets [write]; write the value in backquotes")
}

// configDocProblems compares the Fields table of a configuration page (the
// first table under "## Fields": key, default, valid values, meaning) with cfg,
// a struct pointer holding the defaults.
func configDocProblems(doc []byte, cfg any) []string {
	rows, err := fieldsTable(doc)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	fields := configKeys(reflect.ValueOf(cfg).Elem(), "")
	for _, f := range fields {
		def, ok := rows[f.key]
		if !ok {
			problems = append(problems, fmt.Sprintf("`%s`: the struct has it, the Fields table has no row for it", f.key))
			continue
		}
		if p := defaultMismatch(def, f.value); p != "" {
			problems = append(problems, fmt.Sprintf("`%s`: %s", f.key, p))
		}
	}
	for key := range rows {
		if !containsKey(fields, key) {
			problems = append(problems, fmt.Sprintf("`%s`: the Fields table documents it, the struct has no such key", key))
		}
	}
	return problems
}

type configKey struct {
	key   string // as the collector's YAML spells it: budget.burst
	value reflect.Value
}

// configKeys walks the mapstructure tags the collector decodes the YAML with,
// into nested structs (budget.records_per_second), skipping untagged fields.
func configKeys(v reflect.Value, prefix string) []configKey {
	var keys []configKey
	for i := range v.NumField() {
		field := v.Type().Field(i)
		name, _, _ := strings.Cut(field.Tag.Get("mapstructure"), ",")
		if !field.IsExported() || name == "" || name == "-" {
			continue
		}
		if field.Type.Kind() == reflect.Struct && field.Type != reflect.TypeFor[time.Time]() {
			keys = append(keys, configKeys(v.Field(i), prefix+name+".")...)
			continue
		}
		keys = append(keys, configKey{key: prefix + name, value: v.Field(i)})
	}
	return keys
}

func containsKey(keys []configKey, key string) bool {
	for _, k := range keys {
		if k.key == key {
			return true
		}
	}
	return false
}

// fieldsTable maps each row's key to its default cell.
func fieldsTable(doc []byte) (map[string]string, error) {
	rows := map[string]string{}
	inSection, inTable := false, false
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#"):
			if inSection {
				return rows, tableFound(rows)
			}
			inSection = line == "## Fields"
		case !inSection:
		case strings.HasPrefix(line, "|"):
			inTable = true
			cells := strings.Split(strings.Trim(line, "|"), "|")
			if len(cells) < 2 {
				return nil, fmt.Errorf("a row of the Fields table with fewer than two cells: %s", line)
			}
			key, def := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
			if key == "Field" || strings.Trim(key, "-: ") == "" {
				continue // the header and its separator
			}
			name, ok := backquoted(key)
			if !ok {
				return nil, fmt.Errorf("the Fields table's key cell %q is not one backquoted key", key)
			}
			if _, dup := rows[name]; dup {
				return nil, fmt.Errorf("the Fields table has two rows for `%s`", name)
			}
			rows[name] = def
		case inTable:
			return rows, tableFound(rows)
		}
	}
	return rows, tableFound(rows)
}

func tableFound(rows map[string]string) error {
	if len(rows) == 0 {
		return fmt.Errorf(`no table under "## Fields"`)
	}
	return nil
}

func backquoted(cell string) (string, bool) {
	inner, ok := strings.CutPrefix(cell, "`")
	if !ok {
		return "", false
	}
	inner, ok = strings.CutSuffix(inner, "`")
	return inner, ok && inner != "" && !strings.Contains(inner, "`")
}

// defaultMismatch says how a default cell disagrees with the default value,
// or "" when it agrees. A backquoted cell is the value as YAML would give it;
// any other cell ("none", "all seven") stands for an unset, zero default.
func defaultMismatch(cell string, v reflect.Value) string {
	literal, ok := backquoted(cell)
	if !ok {
		if v.IsZero() {
			return ""
		}
		return fmt.Sprintf("the table's default is %q, but createDefaultConfig sets %v; write the value in backquotes", cell, v.Interface())
	}
	var agrees bool
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(literal)
		agrees = err == nil && d == time.Duration(v.Int())
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(literal, 10, 64)
		agrees = err == nil && n == v.Int()
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(literal)
		agrees = err == nil && b == v.Bool()
	case v.Kind() == reflect.String:
		agrees = literal == v.String()
	default:
		return fmt.Sprintf("the table gives `%s`, and the test cannot compare a %s with it; describe an empty default in words", literal, v.Type())
	}
	if agrees {
		return ""
	}
	return fmt.Sprintf("the table's default is `%s`, createDefaultConfig's is %v", literal, v.Interface())
}
