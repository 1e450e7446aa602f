package pkg

import _ "golang.org/x/sys/unix"
