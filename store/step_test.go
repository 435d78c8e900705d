package store_test

import (
	"fmt"
	"testing"
	"time"

	"iotdash/store"
)

func TestAutoStepFitsAThousandPoints(t *testing.T) {
	for _, span := range []int64{1, 999, 60_000, 3_600_000, 86_400_000, 7 * 86_400_000, 400 * 86_400_000} {
		step := store.AutoStep(span, 1000)
		if span/step >= 1000+1 {
			t.Errorf("AutoStep(%d) = %d gives %d points", span, step, span/step)
		}
	}
}

// TestFitStep: the step a chart of a width reads a span at.
func TestFitStep(t *testing.T) {
	for _, tc := range []struct {
		span  time.Duration
		width int
		want  time.Duration
	}{
		{15 * time.Minute, 1000, 0}, // under a second a pixel: every reading
		{15 * time.Minute, 300, 5 * time.Second},
		{time.Hour, 1000, 5 * time.Second},
		{6 * time.Hour, 1000, 30 * time.Second},
		{24 * time.Hour, 1000, 2 * time.Minute},
		{7 * 24 * time.Hour, 1000, 15 * time.Minute},
		{7 * 24 * time.Hour, 350, 30 * time.Minute},
		// Past the largest step, whole days that keep within the width.
		{5 * 365 * 24 * time.Hour, 100, 19 * 24 * time.Hour},
	} {
		if got := time.Duration(store.FitStep(tc.span.Milliseconds(), tc.width)) * time.Millisecond; got != tc.want {
			t.Errorf("FitStep(%v, %d px) = %v, want %v", tc.span, tc.width, got, tc.want)
		}
	}
}

func ExampleFitStep() {
	// A chart 1,000 pixels wide shows the last 15 minutes reading by
	// reading, and the last 24 hours in buckets of 2 minutes.
	fmt.Println(store.FitStep((15 * time.Minute).Milliseconds(), 1000))
	fmt.Println(time.Duration(store.FitStep((24*time.Hour).Milliseconds(), 1000)) * time.Millisecond)
	// Output:
	// 0
	// 2m0s
}
