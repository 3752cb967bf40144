// Package logtest flattens pdata logs into records that carry their Resource,
// for the tests that look for a record by its attributes wherever the receiver
// put them (the process's identity on the Resource, the call's on the record).
package logtest

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
)

// Record is a log record with the Resource it came under: the receiver puts the
// process's identity on the Resource, the syscall's fields on the record.
type Record struct {
	plog.LogRecord
	Resource pcommon.Resource
}

// Attr is the record's attribute key, or else its Resource's.
func (r Record) Attr(key string) (pcommon.Value, bool) {
	if v, ok := r.Attributes().Get(key); ok {
		return v, true
	}
	return r.Resource.Attributes().Get(key)
}

// Str is Attr's value as a string, "" if there is none.
func (r Record) Str(key string) string {
	v, ok := r.Attr(key)
	if !ok {
		return "" // a zero Value would panic
	}
	return v.AsString()
}

// Int is Attr's integer value, 0 if there is none.
func (r Record) Int(key string) int64 {
	v, ok := r.Attr(key)
	if !ok {
		return 0 // a zero Value would panic
	}
	return v.Int()
}

// Flatten lists the log records of logs.
func Flatten(logs plog.Logs) []Record {
	out := make([]Record, 0, logs.LogRecordCount())
	for i := 0; i < logs.ResourceLogs().Len(); i++ {
		rl := logs.ResourceLogs().At(i)
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				out = append(out, Record{LogRecord: lrs.At(k), Resource: rl.Resource()})
			}
		}
	}
	return out
}
