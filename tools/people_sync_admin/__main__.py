from tools.people_sync_admin.cli import main

main()
