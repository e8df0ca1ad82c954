from r1.cli.main import main

main()
