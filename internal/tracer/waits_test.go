//go:build linux && (amd64 || arm64)

package tracer

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scan's filter lets through every page of the table and the text spans cover
// the image's code (between _stext and _etext, not the init text after it) and the
// modules' apart; a function past the end of text still ends at the next symbol.
func TestWaitTextFromKallsyms(t *testing.T) {
	const kallsyms = "ffffffff81000000 T _stext\n" +
		"ffffffff81000100 T io_schedule\n" +
		"ffffffff81000180 t other_function\n" +
		"ffffffff81234000 T folio_wait_writeback\n" +
		"ffffffff81234400 T folio_end_writeback\n" +
		"ffffffff82314980 T _etext\n" +
		"ffffffff834c3000 T _sinittext\n" +
		"ffffffffc0200000 t jbd2_log_wait_commit\t[jbd2]\n" +
		"ffffffffc0200300 t jbd2_journal_stop\t[jbd2]\n" +
		"ffffffffc0300000 d some_data\t[jbd2]\n"
	syms, err := readTextSymbols(strings.NewReader(kallsyms), func(name string) bool {
		_, ok := waitFunctions[name]
		return ok || name == "_stext" || name == "_etext"
	})
	require.NoError(t, err)
	pages, resolved := waitPages(syms)
	assert.Equal(t, 3, resolved, "io_schedule, folio_wait_writeback, jbd2_log_wait_commit; no landmark")
	text := waitText(syms, pages)

	bits := uint64(len(text.PageBits) * 64)
	for _, page := range []uint64{0xffffffff81000, 0xffffffff81234, 0xffffffffc0200} {
		require.Contains(t, pages, page)
		assert.NotZero(t, text.PageBits[(page%bits)/64]&(1<<(page%64)), "page %x passes the filter", page)
	}
	set := 0
	for _, w := range text.PageBits {
		for ; w != 0; w &= w - 1 {
			set++
		}
	}
	assert.Equal(t, len(pages), set, "no page but the table's")

	assert.Equal(t, uint64(0xffffffff81000000), text.CoreStart)
	assert.Equal(t, uint64(0xffffffff82314980), text.CoreEnd, "_etext, not the init text after it")
	assert.Equal(t, uint64(0xffffffffc0200000), text.ModulesStart)
	assert.Equal(t, uint64(0xffffffffc0200300), text.ModulesEnd, "the last module function; data is no code")

	journal := pages[0xffffffffc0200].Ranges[0]
	assert.Equal(t, [2]uint64{0xffffffffc0200000, 0xffffffffc0200300}, [2]uint64{journal.Start, journal.End})
	assert.EqualValues(t, WaitJournal, journal.Kind)
}
