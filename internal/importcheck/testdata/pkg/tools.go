//go:build tools

package pkg

import _ "example.com/toolonly"
