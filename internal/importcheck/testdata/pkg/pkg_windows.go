package pkg

import _ "example.com/windowsonly"
