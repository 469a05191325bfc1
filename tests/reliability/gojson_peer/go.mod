module sriovkit.test/gojsonpeer

go 1.22
